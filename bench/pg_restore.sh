#!/usr/bin/env bash
# Restore benchmark: runbook's `pg::restore` against the shell pipelines it
# replaces, on the lab's real PostgreSQL and S3 server (s3s-fs), same server,
# same backup, a fresh database for every run.
#
#   runbook:   pg::restore(#{from: "s3://bench/restore.dump.zst", database: ...})
#              (S3 GET | zstd -d in one process, streamed, sha256 checked
#               against the manifest; pg_restore makes the schema, the rows
#               go over 2 connections, pg_restore builds indexes/constraints)
#   pipeline:  aws s3 cp s3://... - | zstd -d | pg_restore --single-transaction
#   floor:     pg_restore --single-transaction < a local, already decompressed
#              file (not timed: the download and decompression): what one
#              pg_restore needs with nothing to fetch, the bound of every
#              restore that loads over one connection
#   parallel:  aws s3 cp s3://... file && zstd -d file && pg_restore -j JOBS
#              (a seekable local archive is what -j needs; download and
#               decompression are counted)
#
# The backup is made the way bench/pg_dump.sh makes it (pg::dump of the seeded
# `events` table, SIZE_MB of table data, default 1100 = >= 1 GB), here with a
# primary key and a secondary index so index builds are part of every restore.
# The sides run alternately RUNS times (default 3); medians are printed with
# the ratios, runbook's peak RSS (/usr/bin/time -v) and the load average
# beside every figure. Targets: runbook >= 1.1x the pipeline, RSS < 64 MB.
# Not a test: numbers depend on the machine.
#   bash bench/pg_restore.sh            (SIZE_MB=1100 RUNS=3 JOBS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1100}
RUNS=${RUNS:-3}
JOBS=${JOBS:-2}

[ -n "${SKIP_SETUP:-}" ] || bash scripts/setup.sh
target=${CARGO_TARGET_DIR:-$PWD/target}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p runbook -p runbook-lab --bins -q
bin=$target/release
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
pg_base=${pg_url%/todos}
pg_bin=$(sed -n 's/.*(PostgreSQL from \(.*\))$/\1/p' "$work/lab.out" | head -n1)
bucket=runbook-lab
psql() { "$pg_bin/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$pg_url" "$@"; }
load() { cut -d' ' -f1 /proc/loadavg; }

cat >"$work/aws.cfg" <<CFG
[default]
region = us-east-1
s3 =
    addressing_style = path
request_checksum_calculation = when_required
response_checksum_validation = when_required
CFG
export AWS_CONFIG_FILE=$work/aws.cfg AWS_SHARED_CREDENTIALS_FILE=/dev/null
download() { aws s3 cp --only-show-errors --endpoint-url "$AWS_ENDPOINT_URL" "s3://$bucket/$1" "$2"; }

echo "seeding >= ${SIZE_MB} MB of table data (primary key + index)..."
rows=$((SIZE_MB * 1024 * 1024 / 175))
psql -c "create table events as
  select i as id,
         timestamptz '2026-01-01' + i * interval '1 second' as at,
         md5(i::text) as hash,
         'user' || (i % 100000) || '@example.com' as email,
         repeat(chr(97 + (i % 26)), 20 + (i % 40)) || ' ' || md5((i * 31)::text) as payload,
         (i % 1000)::int as kind
  from generate_series(1, $rows) as i"
psql -c "alter table events add primary key (id)" -c "create index events_email on events (email)"
table_bytes=$(psql -c "select sum(pg_relation_size(oid)) from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace")
total_bytes=$(psql -c "select sum(pg_total_relation_size(oid)) from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace")
echo "table data: $((table_bytes / 1048576)) MB, with indexes $((total_bytes / 1048576)) MB"
psql -c "vacuum analyze" -c "checkpoint"

echo "backup with pg::dump..."
cat >"$work/dump.rhai" <<'RHAI'
let m = pg::dump(#{to: "s3://bench/restore.dump.zst"});
print("compressed=" + m.bytes + " raw=" + m.raw_bytes + " rows=" + m.rows);
RHAI
"$bin/runbook" run "$work/dump.rhai" --context lab >"$work/dump.out" 2>&1 || { cat "$work/dump.out"; exit 1; }
grep -h 'compressed=' "$work/dump.out"

cat >"$work/restore.rhai" <<'RHAI'
//! Bench: restore the benchmark backup.
//! @param db required  database to restore into
let r = pg::restore(#{from: "s3://bench/restore.dump.zst", database: param("db")});
print("restored " + r.database + " bytes=" + r.bytes + " verified=" + r.verified);
RHAI

drop() { psql -c "drop database if exists $1" >/dev/null 2>&1; }
secs() { printf "%.2f" "$(echo "$2 - $1" | bc)"; }
run_runbook() {
  drop r_rb
  /usr/bin/time -v "$bin/runbook" run "$work/restore.rhai" --context lab --param db=r_rb >"$work/rb.out" 2>"$work/rb.err" \
    || { cat "$work/rb.out" "$work/rb.err"; exit 1; }
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/rb.err" \
    | awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/rb.err")
  echo "$wall $rss" >"$work/rb.last"
}
run_pipeline() {
  local start end
  drop r_pl; psql -c "create database r_pl" >/dev/null
  start=$(date +%s.%N)
  download bench/restore.dump.zst - | zstd -d -q -c \
    | "$pg_bin/pg_restore" --exit-on-error --single-transaction --no-password -d "$pg_base/r_pl"
  end=$(date +%s.%N)
  secs "$start" "$end"
}
run_floor() {
  local start end
  drop r_fl; psql -c "create database r_fl" >/dev/null
  rm -f "$work/floor.dump.zst" "$work/floor.dump"
  download bench/restore.dump.zst "$work/floor.dump.zst"
  zstd -d -q "$work/floor.dump.zst" -o "$work/floor.dump"
  start=$(date +%s.%N)
  "$pg_bin/pg_restore" --exit-on-error --single-transaction --no-password -d "$pg_base/r_fl" <"$work/floor.dump"
  end=$(date +%s.%N)
  rm -f "$work/floor.dump.zst" "$work/floor.dump"
  secs "$start" "$end"
}
run_parallel() {
  local start end
  drop r_pj; psql -c "create database r_pj" >/dev/null
  rm -f "$work/local.dump.zst" "$work/local.dump"
  start=$(date +%s.%N)
  download bench/restore.dump.zst "$work/local.dump.zst"
  zstd -d -q "$work/local.dump.zst" -o "$work/local.dump"
  "$pg_bin/pg_restore" --exit-on-error -j "$JOBS" --no-password -d "$pg_base/r_pj" "$work/local.dump"
  end=$(date +%s.%N)
  rm -f "$work/local.dump.zst" "$work/local.dump"
  secs "$start" "$end"
}
check_rows() {
  local n; n=$("$pg_bin/psql" -X -At -d "$pg_base/$1" -c "select count(*) from events" || true)
  [ "$n" = "$rows" ] || { cat "$work/rb.out" >&2; echo "$1: $n rows, expected $rows" >&2; exit 1; }
}

: >"$work/rb" ; : >"$work/rss" ; : >"$work/pl" ; : >"$work/pj" ; : >"$work/fl"
for i in $(seq 1 "$RUNS"); do
  l=$(load); run_runbook; read -r wall rss <"$work/rb.last"; check_rows r_rb
  echo "run $i/$RUNS: runbook pg::restore            ${wall} s  (load $l)"; echo "$wall" >>"$work/rb"; echo "$rss" >>"$work/rss"
  l=$(load); t=$(run_pipeline); check_rows r_pl
  echo "run $i/$RUNS: aws s3 cp | zstd -d | pg_restore ${t} s  (load $l)"; echo "$t" >>"$work/pl"
  l=$(load); t=$(run_floor); check_rows r_fl
  echo "run $i/$RUNS: floor: pg_restore < local file     ${t} s  (load $l)"; echo "$t" >>"$work/fl"
  l=$(load); t=$(run_parallel); check_rows r_pj
  echo "run $i/$RUNS: download + pg_restore -j $JOBS      ${t} s  (load $l)"; echo "$t" >>"$work/pj"
  drop r_rb; drop r_pl; drop r_pj; drop r_fl
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rb=$(median <"$work/rb"); pl=$(median <"$work/pl"); pj=$(median <"$work/pj"); fl=$(median <"$work/fl")
rss_kb=$(sort -n "$work/rss" | tail -n1)
echo
echo "table data $((table_bytes / 1048576)) MB (+ indexes: $((total_bytes / 1048576)) MB); medians of $RUNS; $(nproc) CPUs, load now $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-46s %8s s\n' "runbook pg::restore (streaming)" "$rb"
printf '%-46s %8s s\n' "aws s3 cp - | zstd -d | pg_restore" "$pl"
printf '%-46s %8s s\n' "floor: pg_restore < local decompressed file" "$fl"
printf '%-46s %8s s\n' "download + zstd -d + pg_restore -j $JOBS" "$pj"
echo "runbook vs pipeline:          $(echo "scale=2; $pl / $rb" | bc)x  (target >= 1.1)"
echo "runbook vs the floor:          $(echo "scale=2; $fl / $rb" | bc)x  (the floor is one pg_restore with nothing to download; above 1.00 needs more than one loading connection)"
echo "runbook vs download + -j $JOBS:   $(echo "scale=2; $pj / $rb" | bc)x"
echo "runbook peak RSS: $((rss_kb / 1024)) MB  (target < 64 MB)"
