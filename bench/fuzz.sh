#!/usr/bin/env bash
# Fuzz campaigns: coverage-guided libFuzzer runs of the targets in
# tests/fuzz/targets.rs, on stable Rust (cargo-bolero, no sanitizer: Rust code
# is memory-safe here, `unsafe` is forbidden in the workspace; what is
# looked for is panics, aborts, stack overflows, hangs and internal errors).
#
#   bash bench/fuzz.sh                      every target, 600 s each, 2 at a time
#   FUZZ_TIME=60 bash bench/fuzz.sh check_script journal_reader
#   PARALLEL=1 bash bench/fuzz.sh
#
# Each campaign starts from the target's corpus (tests/fuzz/__fuzz__/T/corpus,
# seeded from the shipped runbooks, fixtures, configs and journals) and adds
# the inputs that found new coverage; an input that fails lands in
# tests/fuzz/__fuzz__/T/crashes and is replayed by `cargo test -p runbook-fuzz`
# from then on. After the campaign the corpus is minimised (libFuzzer
# -merge=1) so what is committed stays small. Prints per target: executions,
# executions per second, corpus files and bytes, crashes.
# Not a test: a campaign is as good as the time it gets.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_TIME=${FUZZ_TIME:-600}
PARALLEL=${PARALLEL:-2}
ALL=(check_script offline_dry_run stdlib_arguments journal_reader runbook_toml fixtures)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

command -v cargo-bolero >/dev/null \
  || cargo install cargo-bolero --version 0.13.5 --no-default-features --features libfuzzer --locked
logs=${FUZZ_LOGS:-target/fuzz/logs}
mkdir -p "$logs"

# Build once (every campaign uses the same instrumented test binary).
echo "building the instrumented test binary (profile fuzz, no sanitizer)..."
cargo bolero test "${targets[0]}" -p runbook-fuzz --sanitizer NONE --runs 1 >"$logs/build.log" 2>&1 \
  || { tail -n 40 "$logs/build.log"; exit 1; }

campaign() {
  local target=$1 corpus=tests/fuzz/__fuzz__/$1/corpus
  mkdir -p "$corpus"
  # -close_fd_mask=3: the runs' own output (plans, errors) is not shown;
  # libFuzzer keeps its status lines. -rss_limit_mb: a value the limits let
  # through must still fit in memory.
  cargo bolero test "$target" -p runbook-fuzz --sanitizer NONE -T "${FUZZ_TIME}s" --timeout 20s \
    --engine-args=-close_fd_mask=3 --engine-args=-rss_limit_mb=4096 --engine-args=-print_final_stats=1 \
    >"$logs/$target.log" 2>&1 || true
}

running=0
for target in "${targets[@]}"; do
  echo "fuzzing $target for ${FUZZ_TIME} s..."
  campaign "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true

# Minimise each corpus in place (libFuzzer -merge=1: keeps the inputs that
# add coverage).
printf '\n%-18s %12s %10s %8s %10s %8s\n' target executions exec/s files bytes crashes
for target in "${targets[@]}"; do
  dir=tests/fuzz/__fuzz__/$target
  log=$logs/$target.log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  cargo bolero reduce "$target" -p runbook-fuzz --sanitizer NONE --engine-args=-close_fd_mask=3 \
    >"$logs/$target.reduce.log" 2>&1 || echo "($target: corpus not minimised, see $logs/$target.reduce.log)"
  files=$(find "$dir/corpus" -type f | wc -l)
  bytes=$(du -sb "$dir/corpus" | cut -f1)
  crashes=$(find "$dir/crashes" -type f 2>/dev/null | wc -l)
  printf '%-18s %12s %10s %8s %10s %8s\n' "$target" "${runs:-?}" "${speed:-?}" "$files" "$bytes" "$crashes"
done
echo "logs: $logs"
