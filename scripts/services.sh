#!/usr/bin/env bash
# Start, stop or list the seven Privacam services as local processes, for `make up`.
# Each gets its own certificate from the dev PKI, the stack's endpoints from
# .run/stack.env, a pid file and a log under the run directory.
#   scripts/services.sh start|stop|status
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="${PRIVACAM_RUN_DIR:-$ROOT/.run}"
PY="$ROOT/.venv/bin/python"
SERVICES=(device_auth key_manager clip_ingest relay_broker retention access_log privacy_watch)

health_port() { # device_auth=7101 ... privacy_watch=7107, unless overridden in the environment
  local i
  for i in "${!SERVICES[@]}"; do
    [[ "${SERVICES[$i]}" == "$1" ]] && { echo $((7101 + i)); return; }
  done
}

alive() { [[ -f "$RUN_DIR/pids/$1.pid" ]] && kill -0 "$(cat "$RUN_DIR/pids/$1.pid")" 2>/dev/null; }

start() {
  [[ -x "$PY" ]] || { echo "no virtualenv: run 'make setup' first" >&2; exit 1; }
  [[ -f "$RUN_DIR/stack.env" ]] || { echo "no $RUN_DIR/stack.env: run 'bash stack/up.sh' first" >&2; exit 1; }
  mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs"
  "$PY" -m services.common.devpki --dir "$RUN_DIR/pki" >/dev/null
  set -a; source "$RUN_DIR/stack.env"; set +a
  # The key manager's root key: a secret file, made once (a Kubernetes Secret in production).
  if [[ ! -f "$RUN_DIR/secrets/root-key.hex" ]]; then
    mkdir -p "$RUN_DIR/secrets"
    (umask 077; "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$RUN_DIR/secrets/root-key.hex")
  fi
  export PRIVACAM_KEY_MANAGER_ROOT_KEY_FILE="$RUN_DIR/secrets/root-key.hex"
  # The access log's Ed25519 signing key (raw 32 bytes), made once; the key manager trusts
  # its public half, so unwraps with the log's receipts work (log before decrypt).
  if [[ ! -f "$RUN_DIR/secrets/access-log-signing.key" || ! -f "$RUN_DIR/secrets/access-log-keys.json" ]]; then
    mkdir -p "$RUN_DIR/secrets"
    (umask 077; "$PY" - "$RUN_DIR/secrets" <<'PYEOF'
import json, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
directory = Path(sys.argv[1])
key = Ed25519PrivateKey.generate()
(directory / "access-log-signing.key").write_bytes(key.private_bytes_raw())
public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
(directory / "access-log-keys.json").write_text(json.dumps({"dev-log-1": public.decode()}))
PYEOF
    )
  fi
  export PRIVACAM_ACCESS_LOG_SIGNING_KEY_FILE="$RUN_DIR/secrets/access-log-signing.key"
  export PRIVACAM_ACCESS_LOG_SIGNING_KEY_ID="dev-log-1"
  export PRIVACAM_KEY_MANAGER_ACCESS_LOG_KEYS_FILE="$RUN_DIR/secrets/access-log-keys.json"
  export PRIVACAM_DEVICE_AUTH_ACCESS_LOG_KEYS_FILE="$RUN_DIR/secrets/access-log-keys.json"
  # device_auth signs camera and app certificates with the issuing CA (the root stays offline).
  export PRIVACAM_DEVICE_AUTH_ISSUING_CA_CERT_FILE="$RUN_DIR/pki/issuing/ca.crt"
  export PRIVACAM_DEVICE_AUTH_ISSUING_CA_KEY_FILE="$RUN_DIR/pki/issuing/ca.key"
  # Development only (refused unless bound to loopback): the demo lets a week pass for retention.
  export PRIVACAM_RETENTION_DEV_CLOCK_FILE="$RUN_DIR/retention-clock-offset"
  export PRIVACAM_RETENTION_SWEEP_INTERVAL_SECONDS=1
  export PRIVACAM_RETENTION_KEY_PERIOD_GRACE_SECONDS=0
  # Development only: the privacy watch's digest covers a minute instead of a week, so the
  # demo shows one.
  export PRIVACAM_PRIVACY_WATCH_DIGEST_PERIOD_SECONDS=60
  export PRIVACAM_PRIVACY_WATCH_DIGEST_GRACE_SECONDS=5
  export PRIVACAM_PRIVACY_WATCH_DIGEST_CHECK_SECONDS=2
  # A previous demo moved that clock a week ahead; a new demo starts from the real time
  # again. The clock never goes back inside a running process, so retention restarts.
  local offset="$RUN_DIR/retention-clock-offset"
  if [[ -s "$offset" && "$(cat "$offset")" != "0" ]]; then
    stop_one retention
    echo 0 >"$offset"
  fi
  for service in "${SERVICES[@]}"; do
    if alive "$service"; then echo "$service: already running (pid $(cat "$RUN_DIR/pids/$service.pid"))"; continue; fi
    # Its own MinIO user (stack/minio_users.py), if it uses MinIO; root's keys are never given.
    local access_var="PRIVACAM_STACK_MINIO_${service^^}_ACCESS_KEY" secret_var="PRIVACAM_STACK_MINIO_${service^^}_SECRET_KEY"
    # Its own Kafka user (stack/kafka_users.py): its ACLs, nobody else's.
    local kafka_user="PRIVACAM_STACK_KAFKA_${service^^}_USERNAME" kafka_password="PRIVACAM_STACK_KAFKA_${service^^}_PASSWORD"
    PRIVACAM_MINIO_ACCESS_KEY="${!access_var:-}" PRIVACAM_MINIO_SECRET_KEY="${!secret_var:-}" \
    PRIVACAM_KAFKA_USERNAME="${!kafka_user}" PRIVACAM_KAFKA_PASSWORD="${!kafka_password}" \
    PRIVACAM_TLS_CA_FILE="$RUN_DIR/pki/ca.crt" \
    PRIVACAM_TLS_CERT_FILE="$RUN_DIR/pki/services/$service/tls.crt" \
    PRIVACAM_TLS_KEY_FILE="$RUN_DIR/pki/services/$service/tls.key" \
      setsid nohup "$PY" -m "services.$service" >"$RUN_DIR/logs/$service.log" 2>&1 &
    echo $! >"$RUN_DIR/pids/$service.pid"
  done
  for service in "${SERVICES[@]}"; do
    if "$PY" -m services.common.healthcheck "127.0.0.1:$(health_port "$service")" --wait 60; then
      echo "$service: SERVING (health port $(health_port "$service"))"
    else
      echo "$service: did not become healthy; last lines of $RUN_DIR/logs/$service.log:" >&2
      tail -n 20 "$RUN_DIR/logs/$service.log" >&2
      exit 1
    fi
  done
}

stop_one() {
  local service="$1" pid
  alive "$service" || { rm -f "$RUN_DIR/pids/$service.pid"; return 0; }
  pid="$(cat "$RUN_DIR/pids/$service.pid")"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$RUN_DIR/pids/$service.pid"
  echo "$service: stopped"
}

stop() {
  local service
  for service in "${SERVICES[@]}"; do
    stop_one "$service"
  done
}

status() {
  for service in "${SERVICES[@]}"; do
    if alive "$service"; then echo "$service: running (pid $(cat "$RUN_DIR/pids/$service.pid"))"
    else echo "$service: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
