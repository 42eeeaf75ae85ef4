#!/usr/bin/env bash
# Backup streaming benchmark: runbook's `pg::dump` against the shell pipeline
# it replaces, on the lab's real PostgreSQL and S3 server (s3s-fs).
#
#   runbook:     pg::dump(#{to: "s3://bench/runbook.dump.zst"})
#                (pg_dump -Fc -Z0 | zstd -3 on 2 zstd worker threads | S3 multipart
#                 upload, in one process, plus the manifest: exact row counts
#                 from the same snapshot)
#   pipeline:    pg_dump -Fc -Z0 | zstd -3 -q | aws s3 cp - s3://...   (same work,
#                zstd's default single thread)
#   pipeline-T2: pg_dump -Fc -Z0 | zstd -3 -T2 -q | aws s3 cp - ...   (same threads)
#   pipeline-gz: pg_dump -Fc | zstd -3 -q | aws s3 cp - s3://...      (pg_dump's
#                default gzip inside, as the seed scripts did; for reference)
#
# The database is seeded with >= 1 GB of table data (SIZE_MB, default 1100).
# Prints wall time and throughput (table data MB / s) of each, the ratio
# runbook / pipeline, and runbook's peak RSS (/usr/bin/time -v). Targets:
# >= 90% of the pipeline's throughput, peak RSS < 64 MB. Not a test: numbers
# depend on the machine; run it on a quiet one.
#   bash bench/pg_dump.sh                 (SIZE_MB=1100 RUNS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1100}
RUNS=${RUNS:-1}

[ -n "${SKIP_SETUP:-}" ] || bash scripts/setup.sh
cargo build --release -p runbook -p runbook-lab --bins -q
bin=$PWD/target/release
command -v zstd >/dev/null || { echo "zstd is needed (apt-get install zstd)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
lab_pid=
trap '[ -n "$lab_pid" ] && { kill "$lab_pid" 2>/dev/null || true; wait "$lab_pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
"$bin/runbook-lab" up --ssh-hosts 0 --no-kube --postgres --s3 >"$work/lab.out" 2>&1 </dev/null &
lab_pid=$!
for _ in $(seq 1 600); do grep -q '^ *export AWS_ENDPOINT_URL=' "$work/lab.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ *export AWS_ENDPOINT_URL=' "$work/lab.out" || { cat "$work/lab.out"; echo "lab did not start" >&2; exit 1; }
eval "$(sed -n 's/^ *export /export /p' "$work/lab.out")"
export RUNBOOK_STATE_DIR=$work/state
pg_url=$(grep -o 'postgres://[^ ]*/todos' "$work/lab.out" | head -n1)
pg_bin=$(sed -n 's/.*(PostgreSQL from \(.*\))$/\1/p' "$work/lab.out" | head -n1)
bucket=runbook-lab
psql() { "$pg_bin/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$pg_url" "$@"; }

# The S3 client for the pipeline: the aws CLI, path-style, no extra checksums.
cat >"$work/aws.cfg" <<CFG
[default]
region = us-east-1
s3 =
    addressing_style = path
request_checksum_calculation = when_required
response_checksum_validation = when_required
CFG
export AWS_CONFIG_FILE=$work/aws.cfg AWS_SHARED_CREDENTIALS_FILE=/dev/null
upload_stdin() { aws s3 cp --only-show-errors --endpoint-url "$AWS_ENDPOINT_URL" - "s3://$bucket/$1"; }
echo probe | upload_stdin bench/probe || { echo "the aws CLI cannot upload to the lab (pip install awscli)" >&2; exit 1; }

echo "seeding >= ${SIZE_MB} MB of table data..."
rows=$((SIZE_MB * 1024 * 1024 / 175))
psql -c "create table events as
  select i as id,
         timestamptz '2026-01-01' + i * interval '1 second' as at,
         md5(i::text) as hash,
         'user' || (i % 100000) || '@example.com' as email,
         repeat(chr(97 + (i % 26)), 20 + (i % 40)) || ' ' || md5((i * 31)::text) as payload,
         (i % 1000)::int as kind
  from generate_series(1, $rows) as i"
db_bytes=$(psql -c "select pg_database_size('todos')")
table_bytes=$(psql -c "select sum(pg_total_relation_size(oid)) from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace")
echo "table data: $((table_bytes / 1048576)) MB (database $((db_bytes / 1048576)) MB)"
[ "$table_bytes" -ge $((1024 * 1024 * 1024)) ] || { echo "seeded less than 1 GB" >&2; exit 1; }
psql -c "vacuum analyze" -c "checkpoint"

cat >"$work/dump.rhai" <<'RHAI'
let m = pg::dump(#{to: "s3://bench/runbook.dump.zst"});
print("compressed=" + m.bytes + " raw=" + m.raw_bytes + " rows=" + m.rows);
RHAI

best() { sort -n | head -n1; }
run_runbook() {
  /usr/bin/time -v "$bin/runbook" run "$work/dump.rhai" --context lab >"$work/runbook.out" 2>"$work/runbook.err" \
    || { cat "$work/runbook.out" "$work/runbook.err"; exit 1; }
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/runbook.err" \
    | awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/runbook.err")
  echo "$wall $rss"
}
run_pipeline() {
  local flags=$1 key=$2 threads=${3:-1} start end
  start=$(date +%s.%N)
  "$pg_bin/pg_dump" -d "$pg_url" -Fc $flags | zstd -3 -T"$threads" -q -c | upload_stdin "$key"
  end=$(date +%s.%N)
  printf "%.2f\n" "$(echo "$end - $start" | bc)"
}

: >"$work/rb" ; : >"$work/rss" ; : >"$work/pl" ; : >"$work/t2" ; : >"$work/gz"
for i in $(seq 1 "$RUNS"); do
  echo "run $i/$RUNS: runbook..."
  read -r wall rss < <(run_runbook); echo "$wall" >>"$work/rb"; echo "$rss" >>"$work/rss"
  echo "run $i/$RUNS: pipeline (-Z0 | zstd | aws s3 cp -)..."
  run_pipeline "-Z0" bench/pipeline.dump.zst >>"$work/pl"
  echo "run $i/$RUNS: pipeline (-Z0 | zstd -T2 | aws s3 cp -)..."
  run_pipeline "-Z0" bench/pipeline-t2.dump.zst 2 >>"$work/t2"
  echo "run $i/$RUNS: pipeline (default gzip | zstd | aws s3 cp -)..."
  run_pipeline "" bench/pipeline-gz.dump.zst >>"$work/gz"
done

rb=$(best <"$work/rb"); pl=$(best <"$work/pl"); t2=$(best <"$work/t2"); gz=$(best <"$work/gz")
rss_kb=$(sort -n "$work/rss" | tail -n1)
size_of() { aws s3api head-object --endpoint-url "$AWS_ENDPOINT_URL" --bucket "$bucket" --key "$1" --query ContentLength --output text; }
mb=$(echo "scale=1; $table_bytes / 1048576" | bc)
tput() { echo "scale=1; $mb / $1" | bc; }
echo
echo "table data ${mb} MB; best of $RUNS run(s); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
grep -h 'compressed=' "$work/runbook.out" | sed 's/^/runbook: /'
printf '%-42s %8s s %8s MB/s  %12s bytes\n' "runbook pg::dump" "$rb" "$(tput "$rb")" "$(size_of bench/runbook.dump.zst)"
printf '%-42s %8s s %8s MB/s  %12s bytes\n' "pg_dump -Fc -Z0 | zstd | aws s3 cp -" "$pl" "$(tput "$pl")" "$(size_of bench/pipeline.dump.zst)"
printf '%-42s %8s s %8s MB/s  %12s bytes\n' "pg_dump -Fc -Z0 | zstd -T2 | aws s3 cp -" "$t2" "$(tput "$t2")" "$(size_of bench/pipeline-t2.dump.zst)"
printf '%-42s %8s s %8s MB/s  %12s bytes\n' "pg_dump -Fc | zstd | aws s3 cp -" "$gz" "$(tput "$gz")" "$(size_of bench/pipeline-gz.dump.zst)"
echo "runbook / pipeline throughput:    $(echo "scale=2; $pl / $rb" | bc)  (target >= 0.90)"
echo "runbook / pipeline-T2 throughput: $(echo "scale=2; $t2 / $rb" | bc)"
echo "runbook / pipeline-gz throughput: $(echo "scale=2; $gz / $rb" | bc)"
echo "runbook peak RSS: $((rss_kb / 1024)) MB  (target < 64 MB)"
