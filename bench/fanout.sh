#!/usr/bin/env bash
# Fan-out benchmark: runbook's ssh module against raw OpenSSH and Ansible on
# the lab's real sshd hosts (127.0.0.1..127.0.0.N), every tool with the same
# ssh configuration (the lab's ssh_config: same keys, same kex, same known_hosts).
#
#   A: `true` on 1/10/50 hosts, fresh connections each run
#   B: five commands one after another across all hosts (uptime, df, free,
#      a service status, a file read)
#   C: `true` on all hosts twice, 2 s apart: the second run against raw
#      OpenSSH with a warm ControlPersist master (both keep their masters
#      between the two runs: runbook by its default `persist`, ssh by
#      ControlMaster=auto + ControlPersist=60s)
#
# runbook's masters outlive a run (`ssh.persist`, 60 s by default), so A and
# B end them (`runbook ssh close --all`, untimed) before each runbook sample
# to stay cold.
#
# Prints median wall times over RUNS runs and ratios. Not a test: numbers
# depend on the machine; run it on a quiet one.
#   bash bench/fanout.sh            (HOSTS=50 RUNS=5 by default)
#   WORKLOADS=C bash bench/fanout.sh   (only some workloads: any of A B C)
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${HOSTS:-50}
RUNS=${RUNS:-5}
WORKLOADS=${WORKLOADS:-ABC}

bash scripts/setup.sh
cargo build --release -p runbook -p runbook-lab --bins -q
bin=$PWD/target/release

# Ansible from PyPI, in a venv of its own (skipped when already there, or
# when only workload C runs).
venv=bench/.venv
if [[ $WORKLOADS == *[AB]* ]] && [ ! -x "$venv/bin/ansible" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ansible-core
fi

work=$(mktemp -d)
trap 'kill "$lab_pid" 2>/dev/null || true; wait "$lab_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/runbook-lab" up --ssh-hosts "$HOSTS" >"$work/lab.out" 2>&1 </dev/null &
lab_pid=$!
for _ in $(seq 1 300); do grep -q '^ *export RUNBOOK_CONFIG=' "$work/lab.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ *export RUNBOOK_CONFIG=' "$work/lab.out" || { cat "$work/lab.out"; echo "lab did not start" >&2; exit 1; }
eval "$(sed -n 's/^ *export /export /p' "$work/lab.out")"
cfg=$(grep -o '[^ ]*ssh_config' "$work/lab.out" | head -n1)
[ -f "$cfg" ] || { echo "no ssh_config in lab output" >&2; exit 1; }
export RUNBOOK_STATE_DIR=$work/state

addresses() { for i in $(seq 1 "$1"); do echo "127.0.0.$i"; done; }

# Ansible inventory and config using the same ssh_config.
{
  echo "[lab]"
  for a in $(addresses "$HOSTS"); do echo "$a"; done
  echo "[lab:vars]"
  echo "ansible_ssh_common_args='-F $cfg'"
  echo "ansible_python_interpreter=/usr/bin/python3"
} >"$work/inventory.ini"
cat >"$work/ansible.cfg" <<CFG
[defaults]
host_key_checking = True
gathering = explicit
interpreter_python = /usr/bin/python3
stdout_callback = minimal
[ssh_connection]
ssh_args = -F $cfg -o ControlMaster=auto -o ControlPersist=60s
pipelining = True
CFG
export ANSIBLE_CONFIG=$work/ansible.cfg

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
# time_it CMD...: runs CMD RUNS times, prints the median seconds. With
# BEFORE set, runs that command (untimed) before each sample.
time_it() {
  local samples=()
  for _ in $(seq 1 "$RUNS"); do
    if [ -n "${BEFORE:-}" ]; then $BEFORE >/dev/null 2>&1 || true; fi
    local t0; t0=$(now)
    "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }
    local t1; t1=$(now)
    samples+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')")
  done
  printf '%s\n' "${samples[@]}" | median
}

# --- A: one command on N hosts, fresh connections -------------------------
cat >"$work/a.rhai" <<'RHAI'
//! bench A
//! @param n required  hosts
let n = parse_int(param("n"));
let hosts = ssh::hosts("all");
ssh::exec_all(hosts.extract(0, n), "true");
RHAI
raw_a() { addresses "$1" | xargs -P "$1" -I{} ssh -F "$cfg" -o ControlMaster=no {} true; }
ansible_a() { "$venv/bin/ansible" lab -i "$work/inventory.ini" -l "$(addresses "$1" | paste -sd, -)" -m command -a true -f "$1"; }
rb_a() { "$bin/runbook" run "$work/a.rhai" n="$1"; }
rb_close() { "$bin/runbook" ssh close --all; }

# --- B: five commands across all hosts -------------------------------------
cat >"$work/b.rhai" <<'RHAI'
//! bench B
for cmd in ["uptime", "df -P /", "free -m", "pgrep -c sshd", "cat /etc/hostname"] {
    ssh::read_all("all", cmd);
}
RHAI
raw_b() {
  local sock="$work/cm-%C"
  local first=1
  for cmd in uptime "df -P /" "free -m" "pgrep -c sshd" "cat /etc/hostname"; do
    addresses "$HOSTS" | xargs -P "$HOSTS" -I{} ssh -F "$cfg" -o ControlMaster=auto -o "ControlPath=$sock" -o ControlPersist=60s {} "$cmd"
    first=0
  done
  addresses "$HOSTS" | xargs -P "$HOSTS" -I{} ssh -F "$cfg" -o "ControlPath=$sock" -O exit {} 2>/dev/null || true
}
cat >"$work/b.yml" <<'YAML'
- hosts: lab
  gather_facts: false
  tasks:
    - command: uptime
    - command: df -P /
    - command: free -m
    - command: pgrep -c sshd
    - command: cat /etc/hostname
YAML
ansible_b() { "$venv/bin/ansible-playbook" -i "$work/inventory.ini" -f "$HOSTS" "$work/b.yml"; }
rb_b() { "$bin/runbook" run "$work/b.rhai"; }

# --- C: the same run twice, 2 s apart ----------------------------------------
# c_pair FIRST_CMD SECOND_CMD...: prints "FIRST SECOND" seconds of one pair.
c_pair() {
  local t0 t1 t2 t3
  t0=$(now); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }; t1=$(now)
  sleep 2
  t2=$(now); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }; t3=$(now)
  awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {printf "%.3f %.3f\n", b - a, d - c}'
}
raw_c() {
  addresses "$HOSTS" | xargs -P "$HOSTS" -I{} ssh -F "$cfg" -o ControlMaster=auto -o "ControlPath=$work/c-%C" -o ControlPersist=60s {} true
}
raw_c_exit() { addresses "$HOSTS" | xargs -P "$HOSTS" -I{} ssh -F "$cfg" -o "ControlPath=$work/c-%C" -O exit {} 2>/dev/null || true; }
# time_pairs CLEANUP CMD...: RUNS pairs (CLEANUP untimed before and after each); prints "FIRST SECOND" medians.
time_pairs() {
  local cleanup=$1; shift
  local firsts=() seconds=()
  for _ in $(seq 1 "$RUNS"); do
    $cleanup >/dev/null 2>&1 || true
    local pair; pair=$(c_pair "$@") || return 1
    firsts+=("${pair% *}"); seconds+=("${pair#* }")
  done
  $cleanup >/dev/null 2>&1 || true
  echo "$(printf '%s\n' "${firsts[@]}" | median) $(printf '%s\n' "${seconds[@]}" | median)"
}

echo "fan-out benchmark: $HOSTS lab hosts, median of $RUNS runs, kex: $(ssh -F "$cfg" -G 127.0.0.1 | awk '/^kexalgorithms/ {print $2}' | cut -d, -f1)"
printf '%-34s %10s %10s %10s %12s %12s\n' workload runbook raw-ssh ansible "rb/raw" "ansible/rb"
if [[ $WORKLOADS == *A* ]]; then
  for n in 1 10 "$HOSTS"; do
    r=$(BEFORE=rb_close time_it rb_a "$n"); s=$(time_it raw_a "$n"); a=$(time_it ansible_a "$n")
    printf '%-34s %9.3fs %9.3fs %9.3fs %11.2fx %11.2fx\n' "A: true on $n hosts" "$r" "$s" "$a" "$(ratio "$r" "$s")" "$(ratio "$a" "$r")"
  done
fi
if [[ $WORKLOADS == *B* ]]; then
  r=$(BEFORE=rb_close time_it rb_b); s=$(time_it raw_b); a=$(time_it ansible_b)
  printf '%-34s %9.3fs %9.3fs %9.3fs %11.2fx %11.2fx\n' "B: 5 commands, $HOSTS hosts" "$r" "$s" "$a" "$(ratio "$r" "$s")" "$(ratio "$a" "$r")"
fi
if [[ $WORKLOADS == *C* ]]; then
  read -r r1 r2 < <(time_pairs rb_close rb_a "$HOSTS")
  read -r s1 s2 < <(time_pairs raw_c_exit raw_c)
  printf '%-34s %9.3fs %9.3fs %10s %11.2fx %12s\n' "C: 1st run, $HOSTS hosts (cold)" "$r1" "$s1" - "$(ratio "$r1" "$s1")" -
  printf '%-34s %9.3fs %9.3fs %10s %11.2fx %12s\n' "C: 2nd run 2 s later (warm)" "$r2" "$s2" - "$(ratio "$r2" "$s2")" -
  echo "targets: C 2nd run <= 1.2x raw-ssh (warm master); C 1st run <= 1.1x raw-ssh (cold)"
fi
