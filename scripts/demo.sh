#!/usr/bin/env bash
# The main job: build runbook, start the local lab (real sshd hosts, the
# Kubernetes API fake, an HTTP service) and run runbooks against it for real:
# the hello example, a health check of every host and deployment, a deploy
# with an approval gate, and the dry-run plan of the same deploy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p runbook -p runbook-lab --bins
bin=target/release
export RUNBOOK_BIN="$PWD/$bin/runbook"
lab() { "$bin/runbook-lab" run --ssh-hosts 4 -- "$@"; }
lab run examples/hello.rhai --approve
lab run runbooks/health-check.rhai --context lab
lab run runbooks/deploy-production.rhai version=v2 --context lab --approve
lab run --dry-run runbooks/deploy-production.rhai version=v2 --context lab
