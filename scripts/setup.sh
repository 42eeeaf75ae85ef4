#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian 12 machine with
# Rust: Debian packages (after one `apt-get update`, only when something is
# missing). Idempotent: a second run installs nothing.
set -euo pipefail

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v pkill >/dev/null 2>&1 || need_apt+=(procps)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)

if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
else
  echo "setup: system packages present"
fi
