#!/usr/bin/env bash
# Installs the peer that `make bench-peer` measures Tandem against:
# PostgreSQL 15 and pg_auto_failover, from Debian's packages. Idempotent;
# needs root (apt-get). The benchmark runs Postgres as the `postgres` user
# that postgresql-15 creates.
set -euo pipefail
pkgs=(postgresql-15 postgresql-15-auto-failover pg-auto-failover-cli)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-peer: missing Debian packages ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "bench-peer: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq "${missing[@]}"; then
  echo "bench-peer: could not install ${missing[*]}; the comparison needs them and is not run without them" >&2
  exit 1
fi
# Debian's postgresql-15 may create a default cluster on 5432; the
# benchmark does not use it.
