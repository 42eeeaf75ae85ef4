#!/bin/sh
# A stand-in for the k0s binary on a lab host (written by Lab::k0s_standin).
# It keeps k0s's command line and the states k0sctl looks at -- not installed,
# installed as a service, running -- in a data dir, and makes the lab's
# Kubernetes API fake the cluster: `k0s kubeconfig admin` prints the lab's
# kubeconfig with k0s's own `https://localhost:6443` server address, which
# the caller rewrites, as k0sctl does.
set -eu
VERSION="@VERSION@"
LAB_KUBECONFIG="@KUBECONFIG@"
STATE="$0.state"          # remembers the data dir, as the service would
DATA=/var/lib/k0s
[ -f "$STATE" ] && DATA=$(cat "$STATE")

flag() { # flag NAME ARGS...: the value of --NAME=V or --NAME V
  name=$1; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --$name=*) echo "${1#--$name=}"; return 0 ;;
      --$name) echo "$2"; return 0 ;;
    esac
    shift
  done
  return 1
}

cmd=${1:-}; [ $# -gt 0 ] && shift
case "$cmd" in
  version) echo "$VERSION" ;;
  status)
    if [ -f "$DATA/running" ]; then
      printf '{"Version":"%s","Pid":%s,"Role":"%s","SysInit":"lab-standin","StubFile":"","Output":"","Workloads":true,"SingleNode":true}\n' \
        "$VERSION" "$(cat "$DATA/running")" "$(cat "$DATA/role")"
    else
      echo "Error: failed to get status: k0s is not running" >&2; exit 1
    fi ;;
  install)
    [ "${1:-}" = controller ] || { echo "Error: unknown role ${1:-}" >&2; exit 1; }
    shift
    case " $* " in *" --single"*) role=controller+worker ;; *) role=controller ;; esac
    dir=$(flag data-dir "$@" || echo /var/lib/k0s)
    if [ -f "$dir/k0scontroller.service" ] && ! flag force "$@" >/dev/null && ! echo " $* " | grep -q -- ' --force '; then
      echo "Error: failed to install k0s service: service k0scontroller already exists" >&2; exit 1
    fi
    mkdir -p "$dir"
    echo "$dir" > "$STATE"
    echo "$role" > "$dir/role"
    printf '[Service]\nExecStart=%s controller %s\n' "$0" "$*" > "$dir/k0scontroller.service" ;;
  start)
    [ -f "$DATA/k0scontroller.service" ] || { echo "Error: failed to start k0s service: not installed" >&2; exit 1; }
    echo "$$" > "$DATA/running" ;;
  stop) rm -f "$DATA/running" ;;
  reset)
    [ -f "$DATA/running" ] && { echo "Error: k0s is running, stop it first" >&2; exit 1; }
    dir=$(flag data-dir "$@" || echo "$DATA")
    rm -rf "$dir"; rm -f "$STATE" ;;
  kubectl)
    [ -f "$DATA/running" ] || { echo "The connection to the server localhost:6443 was refused" >&2; exit 1; }
    case " $* " in
      *"--raw=/readyz"*|*"--raw /readyz"*) echo ok ;;
      *) exec kubectl --kubeconfig "$LAB_KUBECONFIG" "$@" ;;
    esac ;;
  kubeconfig)
    [ "${1:-}" = admin ] || { echo "Error: unknown command ${1:-}" >&2; exit 1; }
    [ -f "$DATA/running" ] || { echo "Error: k0s is not running" >&2; exit 1; }
    sed -E 's#^([[:space:]]*server:).*#\1 https://localhost:6443#' "$LAB_KUBECONFIG" ;;
  *) echo "k0s lab stand-in: unknown command \`$cmd\`" >&2; exit 1 ;;
esac
