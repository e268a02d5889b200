#!/usr/bin/env bash
# Installs what blox's build and tests need, idempotently and quietly when already present.
#   scripts/install-deps.sh build   -> protoc (etcd-client's build script needs it)
#   scripts/install-deps.sh bench   -> protoc, etcd server + client, wrk (benches/load/run.sh)
#   scripts/install-deps.sh test    -> protoc, etcd server + client, chromium + chromedriver
#                                      (the cluster map's browser tests), a pinned moto and a pinned
#                                      bravado (a client built from the v0.3 specs) in .venv/
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
BRAVADO_VERSION="12.0.1"
BRAVADO_CORE_VERSION="6.4.1"
want="${1:-test}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_packages=()
command -v protoc >/dev/null 2>&1 || apt_packages+=(protobuf-compiler)
if [ "$want" = test ]; then
  command -v etcd >/dev/null 2>&1 || apt_packages+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || apt_packages+=(etcd-client)
  command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || apt_packages+=(chromium-driver)
fi
if [ "$want" = bench ]; then
  command -v etcd >/dev/null 2>&1 || apt_packages+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || apt_packages+=(etcd-client)
  command -v wrk >/dev/null 2>&1 || apt_packages+=(wrk)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${apt_packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >/dev/null
  as_root apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

if [ "$want" = test ]; then
  if ! .venv/bin/moto_server --help >/dev/null 2>&1 \
     || [ "$(.venv/bin/python -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]; then
    echo "installing moto $MOTO_VERSION into .venv/" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  if [ "$(.venv/bin/python -c 'import bravado, bravado_core; print(bravado.version, bravado_core.version)' 2>/dev/null)" \
       != "$BRAVADO_VERSION $BRAVADO_CORE_VERSION" ]; then
    echo "installing bravado $BRAVADO_VERSION into .venv/" >&2
    .venv/bin/pip install -q --disable-pip-version-check \
      "bravado==$BRAVADO_VERSION" "bravado-core==$BRAVADO_CORE_VERSION"
  fi
fi
