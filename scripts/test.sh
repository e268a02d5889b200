#!/usr/bin/env bash
# The whole test suite: installs what the tests need (protoc, etcd, a pinned
# moto and bravado in .venv/) when missing, then checks formatting and lints
# and runs every test of the workspace, integration tests against real etcd
# and moto and the v0.3 client built from the specs (bravado) included.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh test

echo "== deployment files"
bash scripts/check-deploy.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

echo "== the production daemon: compiles without the simulator, carries no test code"
cargo check --quiet -p blox-examples --bin blox-daemon
test_code=$(cargo tree --quiet -p blox-examples -e no-dev --target all -i mockall)
if [ -n "$test_code" ]; then
  echo "the production daemon depends on mockall (test code):" >&2
  echo "$test_code" >&2
  exit 1
fi

echo "== cargo test"
cargo test --workspace --all-features --lib --bins --tests --examples --no-fail-fast
cargo test --workspace --all-features --doc
