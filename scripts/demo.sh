#!/usr/bin/env bash
# The main job: build runbook, start the local lab, and run example runbooks
# against it for real (a web server, health checks, a gate approved with
# --approve, a webhook), then a dry-run that shows the plan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p runbook -p runbook-lab --bins
bin=target/release
export RUNBOOK_BIN="$PWD/$bin/runbook"
"$bin/runbook-lab" run -- run examples/hello.rhai --approve
"$bin/runbook-lab" run -- run examples/http.rhai --context lab --approve
"$bin/runbook-lab" run -- run --dry-run examples/http.rhai --context lab
