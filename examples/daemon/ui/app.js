// The blox cluster map: lists instances, tasks and environments from the
// daemon's API, then follows the streams (one JSON item per line) and patches one tile per change.
"use strict";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- API access, with the bearer token asked for on a 401 ----------------

let tokenWaiters = [];
$("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("bloxToken", $("auth-token").value.trim());
  $("auth").hidden = true;
  tokenWaiters.splice(0).forEach((resolve) => resolve());
});

function askForToken() {
  $("auth").hidden = false;
  $("auth-token").focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

/** A fetch of an API path that answers 401 by asking for the token and retrying. */
async function api(path, init = {}) {
  for (;;) {
    const token = sessionStorage.getItem("bloxToken");
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const resp = await fetch(path, { ...init, headers: { ...headers, ...init.headers } });
    if (resp.status !== 401) return resp;
    await askForToken();
  }
}

class Gone extends Error {}

async function getJson(path) {
  const resp = await api(path);
  if (resp.status === 410) throw new Gone(path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

/** Calls `onItem` for every line of a streamed response (one JSON item per line) until it ends. */
async function readLines(resp, onItem) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) if (line.trim()) onItem(JSON.parse(line));
  }
}

const connection = {};
function showConnection(kind, text) {
  connection[kind] = text;
  $("conn").textContent = Object.entries(connection).map(([k, v]) => `${k}: ${v}`).join(" · ");
}

/**
 * Lists `kind`, then streams its changes from the list's revision; when the
 * stream ends it resumes from the last revision seen (with backoff), and
 * relists when that revision is gone (410).
 */
async function follow(kind, onList, onItem) {
  let rev = null;
  let backoff = 500;
  for (;;) {
    try {
      if (rev === null) {
        const list = await getJson(`/v1/${kind}`);
        onList(list.items);
        rev = list.metadata.entityVersion;
      }
      const resp = await api(`/v1/stream/${kind}?entityVersion=${encodeURIComponent(rev)}`);
      if (resp.status === 410) throw new Gone(kind);
      if (!resp.ok) throw new Error(`stream ${kind}: HTTP ${resp.status}`);
      showConnection(kind, "live");
      await readLines(resp, (item) => {
        rev = item.metadata.entityVersion;
        backoff = 500;
        onItem(item);
      });
      showConnection(kind, "stream ended, reconnecting");
    } catch (e) {
      if (e instanceof Gone) rev = null;
      showConnection(kind, `${e.message}; retrying`);
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
}

// ---- Instances: one keyed tile per container instance --------------------

const instances = new Map(); // arn -> entity
const tiles = new Map(); // arn -> tile element
const grids = new Map(); // cluster ARN -> grid element
const tasksOn = new Map(); // instance arn -> Set of live task arns
const taskHost = new Map(); // task arn -> instance arn
const daemonOn = new Map(); // instance arn -> Map env name -> {state, reason}
let selected = null;

const clusterName = (arn) => arn.slice(arn.lastIndexOf("/") + 1);
const resource = (list, name) => (list || []).find((r) => r.name === name)?.value ?? "?";

function gridFor(clusterArn) {
  let grid = grids.get(clusterArn);
  if (grid) return grid;
  const section = document.createElement("section");
  section.className = "cluster";
  section.innerHTML = `<h2></h2><div class="grid"></div>`;
  section.querySelector("h2").textContent = clusterName(clusterArn);
  grid = section.querySelector(".grid");
  grids.set(clusterArn, grid);
  $("clusters").append(section);
  const option = new Option(clusterName(clusterArn), clusterArn);
  $("f-cluster").append(option);
  return grid;
}

/** The daemon state on an instance: the filtered environment's, else the worst across environments. */
function daemonState(arn) {
  const env = $("f-env").value;
  const on = daemonOn.get(arn);
  const states = env ? [on?.get(env)?.state] : [...(on?.values() || [])].map((s) => s.state);
  return ["failed", "pending", "running"].find((s) => states.includes(s));
}

function summary(i) {
  const tasks = tasksOn.get(i.containerInstanceARN)?.size || 0;
  const cpu = resource(i.remainingResources, "CPU");
  const mem = resource(i.remainingResources, "MEMORY");
  return `${i.EC2InstanceID || i.containerInstanceARN}\n${i.status}${i.agentConnected ? "" : ", agent disconnected"}\n` +
    `${tasks} task(s), remaining CPU ${cpu}, memory ${mem}`;
}

/** Brings one tile in line with its instance (creating it if needed). */
function patchTile(arn) {
  const i = instances.get(arn);
  let tile = tiles.get(arn);
  if (!i) {
    tile?.remove();
    tiles.delete(arn);
    return;
  }
  if (!tile) {
    tile = document.createElement("div");
    tile.className = "tile";
    tile.dataset.arn = arn;
    tiles.set(arn, tile);
    gridFor(i.clusterARN).append(tile);
  }
  tile.dataset.status = i.status;
  tile.classList.toggle("agent-off", !i.agentConnected);
  const d = daemonState(arn);
  if (d) tile.dataset.daemon = d;
  else delete tile.dataset.daemon;
  tile.title = summary(i);
  tile.hidden = !matches(i);
  if (selected === arn) showDetails(arn);
}

function upsertInstance(item) {
  const t0 = performance.now();
  const arn = item.entity.containerInstanceARN;
  if (item.metadata.deleted) instances.delete(arn);
  else instances.set(arn, item.entity);
  patchTile(arn);
  window.__bloxPatchMs = performance.now() - t0;
}

function replaceInstances(items) {
  const t0 = performance.now();
  const seen = new Set(items.map((it) => it.entity.containerInstanceARN));
  for (const arn of instances.keys()) if (!seen.has(arn)) instances.delete(arn);
  for (const arn of [...tiles.keys()]) if (!seen.has(arn)) patchTile(arn);
  for (const it of items) upsertInstance(it);
  void document.body.offsetHeight; // include layout in the measurement
  window.__bloxRenderMs = performance.now() - t0;
  window.__bloxRenderedTiles = tiles.size;
  // And up to the frame that shows it.
  requestAnimationFrame(() => setTimeout(() => (window.__bloxPaintMs = performance.now() - t0)));
}

// ---- Tasks: counted per instance ------------------------------------------

function upsertTask(item) {
  const t = item.entity;
  const arn = t.taskARN;
  const before = taskHost.get(arn);
  const live = !item.metadata.deleted && t.lastStatus !== "STOPPED" && t.containerInstanceARN;
  const after = live ? t.containerInstanceARN : undefined;
  if (before === after) return;
  if (before) tasksOn.get(before)?.delete(arn);
  if (after) {
    if (!tasksOn.has(after)) tasksOn.set(after, new Set());
    tasksOn.get(after).add(arn);
    taskHost.set(arn, after);
  } else taskHost.delete(arn);
  for (const host of [before, after]) if (host && tiles.has(host)) patchTile(host);
}

function replaceTasks(items) {
  tasksOn.clear();
  taskHost.clear();
  items.forEach(upsertTask);
  for (const arn of tiles.keys()) patchTile(arn);
}

// ---- Filter, search and selection -----------------------------------------

function matches(i) {
  const cluster = $("f-cluster").value;
  const status = $("f-status").value;
  const env = $("f-env").value;
  const attr = $("f-attr").value.trim().toLowerCase();
  const search = $("f-search").value.trim().toLowerCase();
  if (cluster && i.clusterARN !== cluster) return false;
  if (status && i.status !== status) return false;
  if (env && !daemonOn.get(i.containerInstanceARN)?.has(env)) return false;
  if (attr && !(i.attributes || []).some((a) => `${a.name}=${a.value ?? ""}`.toLowerCase().includes(attr))) return false;
  if (search && !`${i.containerInstanceARN} ${i.EC2InstanceID || ""}`.toLowerCase().includes(search)) return false;
  return true;
}

$("filters").addEventListener("input", () => tiles.forEach((_, arn) => patchTile(arn)));
$("filters").addEventListener("submit", (ev) => ev.preventDefault());

$("clusters").addEventListener("click", (ev) => {
  const arn = ev.target.closest(".tile")?.dataset.arn;
  if (!arn) return;
  tiles.get(selected)?.classList.remove("selected");
  selected = arn;
  tiles.get(arn).classList.add("selected");
  showDetails(arn);
});

function showDetails(arn) {
  const i = instances.get(arn);
  const rows = [
    ["Instance", i.containerInstanceARN],
    ["EC2", i.EC2InstanceID || "-"],
    ["Status", i.status],
    ["Agent", i.agentConnected ? "connected" : "disconnected"],
    ["Tasks", tasksOn.get(arn)?.size || 0],
    ["CPU left", resource(i.remainingResources, "CPU")],
    ["Memory left", resource(i.remainingResources, "MEMORY")],
  ];
  for (const [env, s] of daemonOn.get(arn) || []) rows.push([env, s.state + (s.reason ? `: ${s.reason}` : "")]);
  const dl = document.createElement("dl");
  for (const [k, v] of rows) dl.append(Object.assign(document.createElement("dt"), { textContent: k }),
    Object.assign(document.createElement("dd"), { textContent: String(v) }));
  $("details").replaceChildren(dl);
}

// ---- Environments: daemon state per instance, deployments -----------------

const envCards = new Map(); // name -> card element
const refreshing = new Map(); // name -> pending refresh promise

function el(tag, text, className) {
  return Object.assign(document.createElement(tag), { textContent: text, className: className || "" });
}

async function refreshEnvironment(name) {
  const [statuses, deployments] = await Promise.all([
    getJson(`/v1/environments/${encodeURIComponent(name)}/instances`),
    getJson(`/v1/environments/${encodeURIComponent(name)}/deployments`),
  ]);
  const touched = new Set();
  for (const [arn, m] of daemonOn) if (m.delete(name)) touched.add(arn);
  for (const s of statuses.items) {
    if (!daemonOn.has(s.instance)) daemonOn.set(s.instance, new Map());
    daemonOn.get(s.instance).set(name, { state: s.state, reason: s.reason });
    touched.add(s.instance);
  }
  touched.forEach(patchTile);
  renderEnvCard(name, statuses, deployments.items);
}

function renderEnvCard(name, statuses, deployments) {
  let card = envCards.get(name);
  if (!card) {
    card = el("div", "", "env");
    card.dataset.env = name;
    envCards.set(name, card);
    $("env-list").append(card);
    $("f-env").append(new Option(name, name));
  }
  const { running, pending, failed } = statuses.summary;
  const body = [el("h3", name), el("div", `${statuses.taskDefinition}: ${running} running, ${pending} pending, ${failed} failed`)];
  const byState = (st) => statuses.items.filter((s) => s.state === st);
  const short = (arn) => instances.get(arn)?.EC2InstanceID || clusterName(arn);
  for (const st of ["pending", "failed"]) {
    const list = byState(st);
    if (!list.length) continue;
    const ul = el("ul", "", st);
    list.slice(0, 10).forEach((s) => ul.append(el("li", short(s.instance) + (s.reason ? ` — ${s.reason}` : ""))));
    if (list.length > 10) ul.append(el("li", `and ${list.length - 10} more`));
    body.push(el("div", `${st}:`), ul);
  }
  const deps = el("ul", "", "deployments");
  for (const d of deployments.slice(-3).reverse()) {
    const li = el("li", `${d.id.slice(0, 8)} ${d.status} ${d.progress.done}/${d.progress.total} `);
    li.dataset.deployment = d.id;
    li.append(Object.assign(document.createElement("progress"), { max: d.progress.total || 1, value: d.progress.done }));
    deps.append(li);
  }
  body.push(deps);
  card.replaceChildren(...body);
}

function removeEnvironment(name) {
  envCards.get(name)?.remove();
  envCards.delete(name);
  [...$("f-env").options].find((o) => o.value === name)?.remove();
  for (const [arn, m] of daemonOn) if (m.delete(name)) patchTile(arn);
}

/** Coalesces refreshes of one environment. */
function scheduleRefresh(name) {
  if (refreshing.has(name)) return;
  const p = sleep(200).then(() => refreshEnvironment(name)).catch((e) => showConnection("environments", e.message))
    .finally(() => refreshing.delete(name));
  refreshing.set(name, p);
}

/** Follows /v1/stream/environments; polls too, since task changes move the daemon's states. */
async function followEnvironments() {
  const pollAll = async () => {
    try {
      const list = await getJson("/v1/environments");
      const names = new Set(list.items.map((e) => e.name));
      for (const name of envCards.keys()) if (!names.has(name)) removeEnvironment(name);
      names.forEach(scheduleRefresh);
    } catch (e) {
      showConnection("environments", e.message);
    }
  };
  setInterval(pollAll, 3000);
  let backoff = 500;
  for (;;) {
    await pollAll();
    try {
      const resp = await api("/v1/stream/environments");
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      showConnection("environments", "live");
      await readLines(resp, (line) => {
        backoff = 500;
        if (line.type === "environment" && line.metadata.deleted) removeEnvironment(line.environmentName);
        else scheduleRefresh(line.environmentName);
      });
    } catch (e) {
      showConnection("environments", `${e.message}; retrying`);
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
}

follow("instances", replaceInstances, upsertInstance);
follow("tasks", replaceTasks, upsertTask);
followEnvironments();
