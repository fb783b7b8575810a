#!/usr/bin/env bash
# Single-host start: every container that touches the staging volume runs as the
# invoking user, so files written by Node can be read and deleted by media_svc.
# Secrets are generated once and kept private (umask 077, mode 0600): .env (tokens and
# database passwords; Compose reads it to fill docker-compose.yml) and the MongoDB
# replica set's key file. `source scripts/start.sh` defines the functions only.
set -euo pipefail
umask 077

SECRET_KEYS=(GATEWAY_TOKEN GATEWAY_API_TOKEN NODE_API_TOKEN MONGO_ROOT_PASSWORD
  MONGODB_PASSWORD_GATEWAY MONGODB_PASSWORD_QUEUE_SVC MONGODB_PASSWORD_MEDIA_SVC
  MONGODB_PASSWORD_RELAY)

random_hex() {
  head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# write_secrets ENV_FILE KEY_FILE: adds what is missing, keeps what is there, and
# makes both files 0600 (also when an older start left them readable by others).
write_secrets() {
  local env_file=$1 key_file=$2 key
  mkdir -p "$(dirname "$env_file")" "$(dirname "$key_file")"
  touch "$env_file"
  chmod 0600 "$env_file"
  for key in CURRENT_UID CURRENT_GID; do sed -i "/^${key}=/d" "$env_file"; done
  echo "CURRENT_UID=$(id -u)" >> "$env_file"
  echo "CURRENT_GID=$(id -g)" >> "$env_file"
  for key in "${SECRET_KEYS[@]}"; do
    grep -q "^${key}=" "$env_file" || echo "${key}=$(random_hex 32)" >> "$env_file"
  done
  chmod 0600 "$env_file"
  # mongod reads 6 to 1024 base64 characters; hex digits are among them.
  [ -s "$key_file" ] || random_hex 256 > "$key_file"
  chmod 0600 "$key_file"
}

main() {
  cd "$(dirname "$0")/.."
  write_secrets .env var/compose/mongo-keyfile
  touch settings.env
  CURRENT_UID=$(id -u); CURRENT_GID=$(id -g)
  export CURRENT_UID CURRENT_GID
  exec docker compose up -d --build "$@"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
