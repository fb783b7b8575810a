#!/usr/bin/env bash
# Single-host start: every container that touches the staging volume runs as the
# invoking user, so files written by Node can be read and deleted by media_svc.
set -euo pipefail
cd "$(dirname "$0")/.."
touch .env
for key in CURRENT_UID CURRENT_GID; do sed -i "/^${key}=/d" .env; done
echo "CURRENT_UID=$(id -u)" >> .env
echo "CURRENT_GID=$(id -g)" >> .env
for key in GATEWAY_TOKEN GATEWAY_API_TOKEN NODE_API_TOKEN; do
  grep -q "^${key}=" .env || echo "${key}=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >> .env
done
CURRENT_UID=$(id -u); CURRENT_GID=$(id -g)
export CURRENT_UID CURRENT_GID
exec docker compose up -d --build "$@"
