#!/usr/bin/env bash
# Offline checks of the deployment files (no Docker engine, no AWS account):
#   - cfn-lint (pinned, in .venv/) on the CloudFormation template, which must pass clean;
#   - deploy/check_deploy.py: the compose files' structure (3-member etcd, two
#     daemons on all three endpoints, ports, health checks, the simulating
#     override built with the simulator), the Dockerfile (multi-stage,
#     non-root, port, health check, a production build without test code) and
#     the template's wiring, then its self-test (every check catches a
#     doctored copy).
# The task role's actions are compared with the code's declared calls by
# `cargo test -p blox-examples --test iam_policy` (part of the workspace tests).
set -euo pipefail
cd "$(dirname "$0")/.."

CFN_LINT_VERSION="1.58.0"

[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("cfn-lint"))' 2>/dev/null)" != "$CFN_LINT_VERSION" ]; then
  echo "installing cfn-lint $CFN_LINT_VERSION into .venv/" >&2
  .venv/bin/pip install -q --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi

echo "== cfn-lint deploy/aws/blox.yaml"
.venv/bin/cfn-lint deploy/aws/blox.yaml

echo "== deploy checks"
.venv/bin/python deploy/check_deploy.py
.venv/bin/python deploy/check_deploy.py --self-test
