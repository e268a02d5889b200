#!/usr/bin/env bash
# The end-to-end load benchmark of issue 17, in one command:
#   bash benches/load/run.sh            # every size, both stores
#   SIZES="5000" STORES="memory" bash benches/load/run.sh   # a quick subset
#   INGEST_ONLY=1 REPEAT=3 SIZES="5000 200000" STORES=memory bash benches/load/run.sh
#     # ingest alone, the sizes alternated REPEAT times (compare medians);
#     # printed and kept in target/load/results.md, not written to RESULTS.md
#   SIZES=1000000 STORES=etcd BLOCK=load-1m bash benches/load/run.sh
#     # the memory goal's size (2.2 GB of events, minutes of ingest),
#     # recorded in its own block of RESULTS.md
# It installs what it needs (etcd, wrk), builds the release daemon and the
# load tools, generates the event sets (5k, 50k, 200k tasks of about 1.8 KB),
# and for each store and size starts a fresh disk-backed etcd (etcd runs
# only), the local SQS stub loaded with the set, and the daemon reading the
# stub. It measures ingest (messages / time from the first receive to the
# last delete), the daemon's RSS once loaded, then, at 5k and 50k tasks, the
# HTTP figures with wrk (the issue's `-t2 -c16 -d20s --latency --timeout
# 30s`), the static ceiling (the same body served prebuilt from memory) and
# the peak RSS under lists, and from 200k tasks the RSS once every task was
# served. Figures go to target/load/results.md and between the markers of
# the block BLOCK (default `load`) of benches/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SIZES=${SIZES:-"5000 50000 200000"}
STORES=${STORES:-"etcd memory"}
DURATION=${DURATION:-20s}
INGEST_ONLY=${INGEST_ONLY:-}
REPEAT=${REPEAT:-1}
BLOCK=${BLOCK:-load}
OUT=$ROOT/target/load
mkdir -p "$OUT"

bash scripts/install-deps.sh bench
# Separate builds: one would unify features, and the daemon must be the
# production build. The event generator runs once per set: a debug build will do.
cargo build --release -q -p blox-examples --bin blox-daemon
cargo build --release -q -p blox-load
cargo build -q -p blox-benches --bin gen-events
BIN=$ROOT/target/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin).get('$1'))" 2>/dev/null; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

RESULTS=$OUT/results.md
: >"$RESULTS"
record() { echo "| $1 | $2 | $3 |" | tee -a "$RESULTS"; }

wrk_rate() { # url -> "req/s MB/s p99"
  wrk -t2 -c16 -d"$DURATION" --latency --timeout 30s "$1" >"$OUT/wrk.txt" 2>&1 || true
  python3 - "$OUT/wrk.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rate = re.search(r"Requests/sec:\s+([\d.]+)", t)
tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", t)
p99 = re.search(r"99%\s+([\d.]+\w+)", t)
scale = {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}
mbs = float(tr.group(1)) * scale.get(tr.group(2), 1) if tr else 0
print(f"{float(rate.group(1)) if rate else 0:.1f} req/s, {mbs:.0f} MB/s, p99 {p99.group(1) if p99 else '?'}")
PY
}

for size in $SIZES; do
  events=$OUT/events-$size.jsonl
  [ -s "$events" ] || "$ROOT/target/debug/gen-events" "$size" "$events"
done

for store in $STORES; do
  for size in $(for _ in $(seq 1 "$REPEAT"); do echo $SIZES; done); do
    events=$OUT/events-$size.jsonl
    total=$(wc -l <"$events")
    PIDS=()
    store_args=()
    if [ "$store" = etcd ]; then
      dir=$OUT/etcd-data && rm -rf "$dir" && mkdir -p "$dir"
      cport=$(free_port); pport=$(free_port)
      etcd --data-dir "$dir" --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" >"$OUT/etcd.log" 2>&1 &
      PIDS+=($!)
      store_args=(--etcd-endpoint "http://127.0.0.1:$cport")
    fi
    sport=$(free_port)
    "$BIN/sqs-stub" "$events" "127.0.0.1:$sport" 2>"$OUT/stub.log" &
    PIDS+=($!)
    dport=$(free_port)
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$sport" AWS_ENDPOINT_URL_ECS="http://127.0.0.1:9" \
      "$BIN/blox-daemon" --bind "127.0.0.1:$dport" "${store_args[@]}" \
      --queue "http://127.0.0.1:$sport/123456789012/bench" --log-level warn \
      >"$OUT/daemon-$store-$size.log" 2>&1 &
    dpid=$!
    PIDS+=("$dpid")
    # Ingest: wait until the stub saw every message deleted (or nothing
    # moved for two minutes: a stalled run is recorded as such).
    last=-1; still=0
    for _ in $(seq 1 14400); do
      deleted=$(curl -sf "http://127.0.0.1:$sport/stats" | json_field deleted || echo 0)
      [ "$deleted" = "$total" ] && break
      if [ "$deleted" = "$last" ]; then still=$((still + 1)); else still=0; last=$deleted; fi
      if [ "$still" -ge 240 ]; then
        record "$store, $size tasks" "ingest STALLED" "$deleted of $total messages deleted"
        break
      fi
      sleep 0.5
    done
    stats=$(curl -sf "http://127.0.0.1:$sport/stats")
    rate=$(python3 -c "import json,sys; s=json.loads(sys.argv[1]); ms=max(1,s['last_delete_ms']-s['first_receive_ms']); print(f\"{s['deleted']*1000/ms:.0f}\")" "$stats")
    record "$store, $size tasks" "ingest ($total messages)" "$rate msg/s"
    if [ -n "$INGEST_ONLY" ]; then
      cleanup
      PIDS=()
      continue
    fi
    sleep 5
    record "$store, $size tasks" "daemon RSS after loading (idle)" "$(( $(rss_kib "$dpid") / 1024 )) MiB"
    base="http://127.0.0.1:$dport"
    if [ "$size" -ge 200000 ]; then
      # Every task served once (one list, to nowhere): the items it keeps count.
      curl -sf -o /dev/null "$base/v1/tasks" || true
      sleep 5
      record "$store, $size tasks" "daemon RSS after serving every task once (idle)" "$(( $(rss_kib "$dpid") / 1024 )) MiB"
    fi
    if [ "$size" = 5000 ]; then
      curl -sf "$base/v1/tasks" -o "$OUT/body-$size.json"
      arn=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['items'][0]['entity']['taskARN'])" "$OUT/body-$size.json" 2>/dev/null || true)
      cluster="bench-03"
      record "$store, $size tasks" "GET /v1/tasks, all (wrk)" "$(wrk_rate "$base/v1/tasks")"
      [ -n "$arn" ] && record "$store, $size tasks" "one task by ARN (wrk)" "$(wrk_rate "$base/v1/tasks/$cluster/$arn")"
      record "$store, $size tasks" "?cluster=X&status=RUNNING (wrk)" "$(wrk_rate "$base/v1/tasks?cluster=$cluster&status=RUNNING")"
      record "$store, $size tasks" "GET /v1/instances, $((size / 10)) instances (wrk)" "$(wrk_rate "$base/v1/instances")"
      record "$store, $size tasks" "GET /v1/ping (wrk)" "$(wrk_rate "$base/v1/ping")"
      cport2=$(free_port)
      "$BIN/static-ceiling" "$OUT/body-$size.json" "127.0.0.1:$cport2" &
      PIDS+=($!)
      sleep 1
      record "$store, $size tasks" "static ceiling: same body prebuilt (wrk)" "$(wrk_rate "http://127.0.0.1:$cport2/body")"
      record "$store, $size tasks" "static ceiling: trivial endpoint (wrk)" "$(wrk_rate "http://127.0.0.1:$cport2/v1/ping")"
    fi
    if [ "$size" = 50000 ]; then
      times=()
      for _ in 1 2 3 4 5; do times+=("$(curl -sf -o /dev/null -w '%{time_total}' "$base/v1/tasks")"); done
      record "$store, $size tasks" "GET /v1/tasks, all, one client (median of 5)" "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) s"
      peak=0
      wrk -t2 -c16 -d"$DURATION" --timeout 30s "$base/v1/tasks" >"$OUT/wrk.txt" 2>&1 &
      wpid=$!
      while kill -0 "$wpid" 2>/dev/null; do
        r=$(rss_kib "$dpid"); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2
      done
      record "$store, $size tasks" "peak RSS, 16 clients listing all" "$((peak / 1024)) MiB"
    fi
    cleanup
    PIDS=()
  done
done

if [ -n "$INGEST_ONLY" ]; then
  echo "figures: $RESULTS (not recorded in benches/RESULTS.md)"
  exit 0
fi

# Record the run between the markers in RESULTS.md.
python3 - "$ROOT/benches/RESULTS.md" "$RESULTS" "$BLOCK" "$SIZES" "$STORES" <<'PY'
import sys, datetime, subprocess
path, res, name, sizes, stores = sys.argv[1:6]
doc = open(path).read()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
rows = open(res).read()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
block = (f"{begin}\nLast run: {datetime.date.today()} at commit {commit}, "
         f"`SIZES=\"{sizes}\" STORES=\"{stores}\" BLOCK={name} bash benches/load/run.sh`."
         "\n\n| store, view | measure | blox |\n|---|---|---|\n"
         f"{rows}{end}")
if begin in doc and end in doc:
    doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
else:
    doc += "\n" + block + "\n"
open(path, "w").write(doc)
PY
echo "figures: $RESULTS (and benches/RESULTS.md)"
