#!/usr/bin/env bash
# Runs the blox daemon: installs protoc (needed to build etcd-client) when
# missing, then builds and starts the daemon with its simulator (the
# `simulator` feature). With no arguments it runs a simulated 20-instance ECS
# cluster on the embedded in-memory store; any arguments are passed to the
# daemon instead (see README's configuration).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh build

if [ "$#" -eq 0 ]; then
  set -- --simulate 20
fi
exec cargo run --release -p blox-examples --features simulator --bin blox-daemon -- "$@"
