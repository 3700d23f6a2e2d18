#!/usr/bin/env bash
# Writes a random cluster token to deploy/docker/secrets/token (once; an existing token is
# kept). Clients use the same file: WEIR_TOKEN_FILE=deploy/docker/secrets/token.
set -euo pipefail
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
if [ ! -s "$dir/token" ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$dir/token")
  echo "wrote $dir/token"
fi
