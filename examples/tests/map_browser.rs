//! The cluster map page in a real browser: Debian's headless `chromium`,
//! driven through `chromedriver` with plain WebDriver HTTP calls (JSON over
//! the shared test client), against `blox-daemon --simulate N`.
//!
//! Needs `chromium` and `chromedriver` (`scripts/install-deps.sh test`).
//! Screenshots go to `artifacts/` (gitignored). The render-time benchmark
//! is ignored by default: `cargo test -p blox-examples --test map_browser
//! -- --ignored --nocapture render_time`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Proc, answers, change_instance, client, create_and_deploy, daemon, free_port, items, local,
    set_instance_state, wait_for,
};

/// The path of an executable on `PATH`, or a failure saying how to install it.
fn require(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{program}` is not installed: run `scripts/install-deps.sh test` (Debian chromium and chromium-driver)")
    })
}

/// A headless chromium session through chromedriver.
struct Browser {
    driver: SocketAddr,
    session: String,
    _chromedriver: Proc,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = require("chromium");
        let chromedriver = require("chromedriver");
        let port = free_port();
        let driver = local(port);
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc(child);
        wait_for(
            "chromedriver to answer /status",
            Duration::from_secs(30),
            async || answers(driver, "/status").await,
        )
        .await;
        let profile =
            std::env::temp_dir().join(format!("blox-map-chromium-{}-{port}", std::process::id()));
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,800",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = call(driver, "POST", "/session", Some(caps)).await;
        let session = created["sessionId"].as_str().unwrap().to_owned();
        Browser {
            driver,
            session,
            _chromedriver: proc,
            profile,
        }
    }

    async fn open(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url }))).await;
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    async fn eval(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.cmd("POST", "execute/sync", Some(body)).await
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "screenshot", None).await;
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn cmd(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{rest}", self.session);
        call(self.driver, method, &path, body).await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends chromium cleanly before chromedriver is killed; best effort.
        let (driver, path) = (self.driver, format!("/session/{}", self.session));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(client::request(driver, "DELETE", &path, None));
        })
        .join();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A WebDriver call: its `value`, or a failure with the driver's error.
async fn call(driver: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let r = client::request(driver, method, path, body.as_deref()).await;
    let v = r.json();
    assert_eq!(r.status, 200, "WebDriver {method} {path}: {v}");
    v["value"].clone()
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

async fn count(b: &Browser, selector: &str) -> u64 {
    let script = format!("return document.querySelectorAll({selector:?}).length");
    b.eval(&script).await.as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_follows_a_deployment_and_a_drain_without_a_reload() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "20", "--simulate-seed", "7"]).await;
    let browser = Browser::start().await;
    browser.open(&format!("http://{addr}/")).await;
    wait_for("20 instance tiles", Duration::from_secs(60), async || {
        count(&browser, "#clusters .tile").await == 20
    })
    .await;
    assert_eq!(
        count(&browser, "#clusters .tile[data-status=ACTIVE]").await,
        20
    );
    // Marks the page and a tile: both must survive every later update.
    let victim = items(&client::get(addr, "/v1/instances").await.json())[0]["entity"]
        ["containerInstanceARN"]
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .eval(&format!(
            "window.__sameLoad = true; window.__victim = document.querySelector('.tile[data-arn=\"{victim}\"]'); return !!window.__victim"
        ))
        .await;

    create_and_deploy(addr, "logs", "log-agent:1").await;
    wait_for(
        "every tile to show its daemon task running",
        Duration::from_secs(180),
        async || count(&browser, "#clusters .tile[data-daemon=running]").await == 20,
    )
    .await;
    wait_for("the deployment to show 20/20", Duration::from_secs(60), async || {
        browser
            .eval("return document.querySelector('.env[data-env=logs] .deployments li')?.textContent || ''")
            .await
            .as_str()
            .unwrap()
            .contains("completed 20/20")
    })
    .await;

    let drained = set_instance_state(addr, &victim, "DRAINING").await;
    assert_eq!(drained.status, 200);
    wait_for(
        "the drained tile to turn DRAINING",
        Duration::from_secs(60),
        async || browser.eval("return window.__victim.dataset.status").await == "DRAINING",
    )
    .await;
    let same = browser
        .eval("return window.__sameLoad === true && window.__victim.isConnected")
        .await;
    assert_eq!(same, true, "no reload, and the tile was patched in place");
    assert_eq!(count(&browser, "#clusters .tile").await, 20);

    // Selecting a tile shows its details.
    let details = browser
        .eval("window.__victim.click(); return document.getElementById('details').textContent")
        .await;
    let details = details.as_str().unwrap();
    assert!(
        details.contains(&victim) && details.contains("DRAINING"),
        "{details}"
    );
    let details = browser
        .eval("document.querySelector('#clusters .tile[data-status=ACTIVE]').click(); return document.getElementById('details').textContent")
        .await;
    let details = details.as_str().unwrap();
    assert!(
        details.contains("logsrunning"),
        "the environment's state: {details}"
    );
    browser.screenshot("cluster-map.png").await;

    // Searching by EC2 instance id finds exactly that tile.
    let ec2 = client::get(addr, "/v1/instances").await.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["entity"]["containerInstanceARN"] == victim.as_str())
        .unwrap()["entity"]["EC2InstanceID"]
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .eval(&format!("const s = document.getElementById('f-search'); s.value = '{ec2}'; s.dispatchEvent(new Event('input', {{bubbles: true}}))"))
        .await;
    let shown = browser
        .eval("return [...document.querySelectorAll('#clusters .tile:not([hidden])')].map(t => t.dataset.arn)")
        .await;
    assert_eq!(shown, json!([victim]));
    browser
        .eval("const s = document.getElementById('f-search'); s.value = ''; s.dispatchEvent(new Event('input', {bubbles: true}))")
        .await;

    // The status filter hides the others.
    browser
        .eval("const s = document.getElementById('f-status'); s.value = 'DRAINING'; s.dispatchEvent(new Event('input', {bubbles: true}))")
        .await;
    assert_eq!(count(&browser, "#clusters .tile:not([hidden])").await, 1);
    browser
        .eval("const s = document.getElementById('f-status'); s.value = ''; s.dispatchEvent(new Event('input', {bubbles: true}))")
        .await;

    // An agent that disconnects shows on its tile and in its details.
    let other = items(&client::get(addr, "/v1/instances").await.json())
        .iter()
        .map(|i| {
            i["entity"]["containerInstanceARN"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .find(|a| *a != victim)
        .unwrap();
    let r = change_instance(addr, &other, &json!({"agentConnected": false})).await;
    assert_eq!(r.status, 200);
    wait_for(
        "the tile to show the agent disconnected",
        Duration::from_secs(60),
        async || count(&browser, "#clusters .tile.agent-off").await == 1,
    )
    .await;
    let details = browser
        .eval(&format!(
            "const t = document.querySelector('.tile[data-arn=\"{other}\"]'); t.click(); return [t.classList.contains('agent-off'), document.getElementById('details').textContent]"
        ))
        .await;
    assert_eq!(details[0], true);
    assert!(
        details[1].as_str().unwrap().contains("disconnected"),
        "{details}"
    );
    assert_eq!(
        browser.eval("return window.__sameLoad === true").await,
        true,
        "patched without a reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_cannot_be_placed_show_as_failed_with_the_reason() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "3", "--simulate-seed", "3"]).await;
    let browser = Browser::start().await;
    browser.open(&format!("http://{addr}/")).await;
    wait_for("3 instance tiles", Duration::from_secs(60), async || {
        count(&browser, "#clusters .tile").await == 3
    })
    .await;
    // A task definition larger than any simulated instance.
    let td = client::request(
        addr,
        "POST",
        "/v1/simulator/task-definitions",
        Some(&json!({"family": "huge", "cpu": 256, "memory": 1_000_000}).to_string()),
    )
    .await;
    assert_eq!(td.status, 200, "{}", String::from_utf8_lossy(&td.body));
    let family_revision = format!("huge:{}", td.json()["revision"]);
    create_and_deploy(addr, "big", &family_revision).await;
    wait_for(
        "every tile to show a failed daemon",
        Duration::from_secs(120),
        async || count(&browser, "#clusters .tile[data-daemon=failed]").await == 3,
    )
    .await;
    let card = browser
        .eval("return document.querySelector('.env[data-env=big]')?.textContent || ''")
        .await;
    let card = card.as_str().unwrap();
    assert!(card.contains("3 failed"), "{card}");
    assert!(card.contains("RESOURCE:MEMORY"), "the reason: {card}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_public_but_asks_for_the_api_token() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "3", "--api-token", "s3cret"]).await;
    let page = client::get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("cluster map"));
    assert_eq!(client::get(addr, "/v1/instances").await.status, 401);

    let browser = Browser::start().await;
    browser.open(&format!("http://{addr}/")).await;
    wait_for("the token prompt", Duration::from_secs(30), async || {
        browser
            .eval("return !document.getElementById('auth').hidden")
            .await
            == true
    })
    .await;
    assert_eq!(count(&browser, "#clusters .tile").await, 0);
    browser
        .eval("document.getElementById('auth-token').value = 's3cret'; document.getElementById('auth').requestSubmit()")
        .await;
    wait_for("3 instance tiles", Duration::from_secs(60), async || {
        count(&browser, "#clusters .tile").await == 3
    })
    .await;
    assert_eq!(
        browser
            .eval("return sessionStorage.getItem('bloxToken')")
            .await,
        "s3cret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_relists_when_the_daemon_restarts_with_a_new_store() {
    let port = free_port();
    let addr = local(port);
    let first = daemon(addr, &["--simulate", "4"]).await;
    let browser = Browser::start().await;
    browser.open(&format!("http://{addr}/")).await;
    wait_for("4 instance tiles", Duration::from_secs(60), async || {
        count(&browser, "#clusters .tile").await == 4
    })
    .await;
    browser.eval("window.__sameLoad = true").await;
    drop(first);
    // A new memory store: the page's revision is from another epoch (410),
    // so it must reconnect, relist and replace the tiles.
    let _second = daemon(addr, &["--simulate", "6"]).await;
    wait_for(
        "6 instance tiles after the restart",
        Duration::from_secs(90),
        async || count(&browser, "#clusters .tile").await == 6,
    )
    .await;
    assert_eq!(
        browser.eval("return window.__sameLoad === true").await,
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p blox-examples --test map_browser -- --ignored --nocapture"]
async fn render_time_of_5000_instances() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "5000", "--simulate-seed", "1"]).await;
    wait_for(
        "5000 instances listed",
        Duration::from_secs(300),
        async || items(&client::get(addr, "/v1/instances").await.json()).len() == 5000,
    )
    .await;
    let browser = Browser::start().await;
    let (mut runs, mut frames) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        browser.open(&format!("http://{addr}/")).await;
        wait_for("5000 tiles", Duration::from_secs(120), async || {
            browser.eval("return window.__bloxRenderedTiles || 0").await == 5000
        })
        .await;
        runs.push(
            browser
                .eval("return window.__bloxRenderMs")
                .await
                .as_f64()
                .unwrap(),
        );
        wait_for("the first frame", Duration::from_secs(30), async || {
            browser
                .eval("return window.__bloxPaintMs !== undefined")
                .await
                == true
        })
        .await;
        frames.push(
            browser
                .eval("return window.__bloxPaintMs")
                .await
                .as_f64()
                .unwrap(),
        );
    }
    browser.screenshot("cluster-map-5000.png").await;
    // One change patches one tile: drain an instance and time its update.
    let arn = items(&client::get(addr, "/v1/instances").await.json())[4321]["entity"]
        ["containerInstanceARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let drained = set_instance_state(addr, &arn, "DRAINING").await;
    assert_eq!(drained.status, 200);
    let tile = format!("document.querySelector('.tile[data-arn=\"{arn}\"]').dataset.status");
    wait_for("the drained tile", Duration::from_secs(60), async || {
        browser.eval(&format!("return {tile}")).await == "DRAINING"
    })
    .await;
    let patch = browser
        .eval("return window.__bloxPatchMs")
        .await
        .as_f64()
        .unwrap();
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    println!(
        "5000 instance tiles, 5 page loads: list to laid-out DOM {runs:.1?} ms (median {:.1}); to the next frame {frames:.1?} ms (median {:.1}); one streamed change patched in {patch:.2} ms",
        median(&runs),
        median(&frames)
    );
}
