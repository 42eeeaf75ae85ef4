#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian 12 machine with
# Rust: Debian packages (after one `apt-get update`, only when something is
# missing), the lab's S3 servers (s3s-fs from crates.io; moto and boto3 in a
# Python venv at $RUNBOOK_LAB_VENV, default ~/.cache/runbook-lab/venv), and
# Hetzner's own clients that judge the lab's Hetzner Cloud fake (hcloud-cli
# from Debian, the hcloud library from PyPI in the same venv).
# Idempotent: a second run installs nothing.
set -euo pipefail

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v pkill >/dev/null 2>&1 || need_apt+=(procps)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
[ -x /usr/bin/hcloud ] || need_apt+=(hcloud-cli)
# The lab's PostgreSQL (server and clients of one version) and the venv for moto.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need_apt+=(postgresql)
compgen -G '/usr/lib/postgresql/*/bin/pg_dump' >/dev/null || need_apt+=(postgresql-client)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The headless browser that judges `runbook show --html` (tests/cli/html.rs).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)

if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
else
  echo "setup: system packages present"
fi

# The lab's default S3 server: s3s-fs 0.14.1 (0.15+ need a newer rustc).
s3s_fs="${RUNBOOK_LAB_S3S_FS:-}"
if [ -z "$s3s_fs" ] && ! command -v s3s-fs >/dev/null 2>&1 \
  && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  echo "setup: installing s3s-fs 0.14.1 (cargo install, about 2-3 minutes)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
else
  echo "setup: s3s-fs present"
fi

# The lab's second S3 server (moto) and the client the lab tests check with (boto3).
venv="${RUNBOOK_LAB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-lab/venv}"
if ! "$venv/bin/python3" -c 'import boto3, moto.server' >/dev/null 2>&1 \
  || [ ! -x "$venv/bin/moto_server" ]; then
  echo "setup: creating $venv with moto[server] and boto3 (about 1-3 minutes)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'boto3==1.44.5'
else
  echo "setup: lab venv present ($venv)"
fi

# The JSON Schema validator that judges `--output json` (tests/cli/json_schema.rs);
# moto brings it already, this only makes sure.
if ! "$venv/bin/python3" -c 'import jsonschema' >/dev/null 2>&1; then
  echo "setup: installing jsonschema (Python) into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'jsonschema==4.26.0'
else
  echo "setup: jsonschema (Python) present in the lab venv"
fi

# The official Hetzner Cloud Python library, the second client tests/lab/tests/hcloud.rs drives.
if ! "$venv/bin/python3" -c 'import hcloud' >/dev/null 2>&1; then
  echo "setup: installing hcloud (Python) into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'hcloud==2.27.0'
else
  echo "setup: hcloud (Python) present in the lab venv"
fi
