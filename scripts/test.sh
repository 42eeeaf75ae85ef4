#!/usr/bin/env bash
# The test job: install what the tests need, then formatting, lints and every
# test of the workspace (unit tests, the lab, and the CLI integration tests
# that run the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
