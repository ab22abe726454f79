#!/usr/bin/env bash
# Start the local Privacam infrastructure on 127.0.0.1 (or $PRIVACAM_STACK_HOST).
#   stack/up.sh [kafka|minio|redis|coturn|prometheus ...]     (default: all)
# Installs what is missing, generates secrets on first start, reuses servers
# that already answer on their ports, waits until each one is healthy and
# writes <run>/stack.env (PRIVACAM_* settings for the services and tests).
#
# STACK_STARTED_FILE=<path>: append the names of the servers this run actually
# started (not reused), so a test run can stop only those afterwards: run
# stack/down.sh with the same STACK_STARTED_FILE.
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_components "$@"
[ -n "$(ip -o addr show to "$STACK_HOST" 2>/dev/null)" ] ||
  die "PRIVACAM_STACK_HOST=$STACK_HOST is not an address of this machine"

"$STACK_DIR/install.sh" "${COMPONENTS[@]}"

mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids"
# One up/down at a time per run dir. Servers must not inherit this fd, or
# they would hold the lock forever (see launch).
exec 9>"$RUN_DIR/.lock"
flock 9

# Random on first start, then stable for this run dir; never a default.
MINIO_USER=$(secret minio_root_user 10)
MINIO_PASSWORD=$(secret minio_root_password 24)
TURN_SECRET=$(secret turn_shared_secret 32)
# Redis: one ACL user per service, coturn's (Redis's `default` user: coturn cannot name
# a user) and a setup user for this script only. See stack/redis_acl.py.
REDIS_SERVICES=(device_auth clip_ingest relay_broker retention)
for user in setup coturn "${REDIS_SERVICES[@]}"; do secret "redis_${user}_password" 24 >/dev/null; done
REDIS_SETUP_PASSWORD=$(secret redis_setup_password 24)
REDIS_COTURN_PASSWORD=$(secret redis_coturn_password 24)

# ------------------------------------------------------------- helpers ----
sed_escape() { printf '%s' "$1" | sed 's/[|&\\]/\\&/g'; }

# Render a template from stack/config into the run dir (private: may hold secrets).
render() {
  (
    umask 077
    sed -e "s|@RUN_DIR@|$(sed_escape "$RUN_DIR")|g" \
      -e "s|@HOST@|$STACK_HOST|g" \
      -e "s|@REPO_DIR@|$(sed_escape "$REPO_DIR")|g" \
      -e "s|@TURN_SHARED_SECRET@|$(sed_escape "$TURN_SECRET")|g" \
      -e "s|@REDIS_COTURN_PASSWORD@|$(sed_escape "$REDIS_COTURN_PASSWORD")|g" \
      "$STACK_DIR/config/$1" >"$2.tmp"
  )
  mv "$2.tmp" "$2"
}

# Start a server in its own session (so Ctrl-C or the end of a CI step in the
# caller does not kill it), output appended to its log, pid recorded.
launch() {
  local name=$1 logf
  shift
  logf=$(log_file "$name")
  printf '\n=== %s stack/up.sh: %s\n' "$(date -Is)" "$*" >>"$logf"
  setsid nohup "$@" >>"$logf" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file "$name")"
}

# ------------------------------------------------------ health checks ----
# Each answers "is a healthy <name> serving on its port right now?".
healthy_kafka() {
  # Cheap TCP probe first; then a real request through the Admin API, as the administrator
  # (a broker that does not know our certificate is not ours).
  tcp_open 9092 && tcp_open 9094 || return 1
  [ -s "$RUN_DIR/kafka/admin.properties" ] || return 1
  local out
  out=$(KAFKA_TOOL_TIMEOUT=20 kafka_tool org.apache.kafka.tools.ClusterTool cluster-id \
    --bootstrap-server "$STACK_HOST:9094" --config "$RUN_DIR/kafka/admin.properties" 2>/dev/null) || return 1
  [[ $out == *"Cluster ID: "* ]]
}
healthy_minio() {
  curl -fsS -m 2 -o /dev/null "http://$STACK_HOST:$MINIO_PORT/minio/health/ready" 2>/dev/null || return 1
  # Our credentials must work too (a MinIO with other creds is useless to us).
  # Creds go through stdin, not argv, so they never show up in `ps`.
  printf 'user = "%s:%s"\n' "$MINIO_USER" "$MINIO_PASSWORD" |
    curl -fsS -m 3 -o /dev/null -K - --aws-sigv4 "aws:amz:us-east-1:s3" "http://$STACK_HOST:$MINIO_PORT/" 2>/dev/null
}
# As the setup user; or, before its first ACL setup, a Redis without users (the
# default user with no password, as an older stack/up.sh left it): apply_redis_acl
# then creates the users.
redis_setup_cli() {
  REDISCLI_AUTH=$REDIS_SETUP_PASSWORD redis-cli -h "$STACK_HOST" -p 6379 --user setup "$@"
}
healthy_redis() {
  [ "$(redis_setup_cli ping 2>/dev/null)" = PONG ] ||
    [ "$(redis-cli -h "$STACK_HOST" -p 6379 ping 2>/dev/null)" = PONG ]
}
# A real STUN Binding request/response over UDP.
healthy_coturn() { timeout 5 turnutils_stunclient -p 3478 "$STACK_HOST" >/dev/null 2>&1; }
healthy_prometheus() { curl -fsS -m 2 -o /dev/null "http://$STACK_HOST:9090/-/ready" 2>/dev/null; }

health_timeout() { case $1 in kafka) echo 120 ;; minio) echo 60 ;; prometheus) echo 30 ;; *) echo 15 ;; esac; }

# ------------------------------------------------- per-server startup ----
# The broker's key and self-signed certificate (CN=kafka-broker: its principal, the super
# user). Clients trust exactly this certificate; the internal and controller listeners
# accept only it as a client certificate.
kafka_tls() {
  local d="$RUN_DIR/kafka/tls"
  if [ ! -s "$d/broker.pem" ]; then
    mkdir -p "$d"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
      -subj "/CN=kafka-broker" -addext "subjectAltName=IP:$STACK_HOST,DNS:localhost" \
      -keyout "$d/broker.key" -out "$d/broker.crt" 2>/dev/null) ||
      die "kafka: openssl could not create the broker's certificate"
    (umask 077 && cat "$d/broker.key" "$d/broker.crt" >"$d/broker.pem")
  fi
  render kafka-admin.properties.tmpl "$RUN_DIR/kafka/admin.properties"
}

start_kafka() {
  require_java
  mkdir -p "$RUN_DIR/kafka"
  kafka_tls
  render server.properties.tmpl "$RUN_DIR/kafka/server.properties"
  # KRaft storage is formatted once, with a cluster id generated on first start.
  if [ ! -f "$RUN_DIR/kafka/data/meta.properties" ]; then
    local id_file="$RUN_DIR/kafka/cluster-id"
    [ -s "$id_file" ] || kafka_tool kafka.tools.StorageTool random-uuid >"$id_file"
    log "kafka: formatting KRaft storage (cluster id $(cat "$id_file"))"
    kafka_tool kafka.tools.StorageTool format -t "$(cat "$id_file")" \
      -c "$RUN_DIR/kafka/server.properties" >>"$(log_file kafka)" 2>&1 ||
      die "kafka: storage format failed, see $(log_file kafka)"
  fi
  # Small heap: the dev/CI machine has 2 cores and runs the whole stack.
  launch kafka java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STACK_DIR/config/kafka-log4j2.properties" \
    -Dkafka.logs.dir="$RUN_DIR/logs" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$RUN_DIR/kafka/server.properties"
}

start_minio() {
  mkdir -p "$RUN_DIR/minio/data"
  # Root creds via the environment (not argv); no update checks (no internet).
  (
    export MINIO_ROOT_USER="$MINIO_USER" MINIO_ROOT_PASSWORD="$MINIO_PASSWORD" MINIO_UPDATE=off
    launch minio "$MINIO_BIN" server --address "$STACK_HOST:$MINIO_PORT" \
      --console-address "$STACK_HOST:$((MINIO_PORT + 1))" "$RUN_DIR/minio/data"
  )
}

# The users as an aclfile (password hashes only), read by redis-server at start.
write_redis_aclfile() {
  mkdir -p "$RUN_DIR/redis"
  (umask 077 && python3 "$STACK_DIR/redis_acl.py" file --secrets "$RUN_DIR/secrets" >"$RUN_DIR/redis/users.acl.tmp")
  mv "$RUN_DIR/redis/users.acl.tmp" "$RUN_DIR/redis/users.acl"
}

start_redis() {
  write_redis_aclfile
  launch redis redis-server "$STACK_DIR/config/redis.conf" --bind "$STACK_HOST" --dir "$RUN_DIR/redis" \
    --aclfile "$RUN_DIR/redis/users.acl"
}

# The same users on a running Redis (a reused one, or one started before they existed),
# idempotently: each ACL SETUSER starts with `reset`. Commands go through stdin and the
# password through the environment, so no secret shows up in `ps`.
apply_redis_acl() {
  write_redis_aclfile
  if [ "$(redis_setup_cli ping 2>/dev/null)" != PONG ]; then
    # No setup user yet: the server still lets anyone in as `default`. Create it first,
    # so the rest (which takes `default` away) runs as the setup user.
    python3 "$STACK_DIR/redis_acl.py" setuser --secrets "$RUN_DIR/secrets" | sed -n 1p |
      redis-cli -h "$STACK_HOST" -p 6379 >/dev/null
  fi
  local out
  out=$(python3 "$STACK_DIR/redis_acl.py" setuser --secrets "$RUN_DIR/secrets" | redis_setup_cli 2>&1) ||
    die "redis: could not set up the ACL users: $out"
  [ -z "$(grep -v '^OK$' <<<"$out")" ] || die "redis: ACL SETUSER refused:"$'\n'"$out"
  log "redis: ACL users set (setup, ${REDIS_SERVICES[*]}, default = coturn)"
}

# Buckets, policies and users, as root (idempotent). It needs the `minio` package's admin
# client, so the project's virtualenv (make setup) must exist first.
apply_minio_users() {
  local py="${PRIVACAM_PYTHON:-$STACK_DIR/../.venv/bin/python}" out
  [ -x "$py" ] || die "minio: no virtualenv to set up its users with ($py); run 'make setup' first"
  out=$("$py" "$STACK_DIR/minio_users.py" apply --secrets "$RUN_DIR/secrets" --endpoint "$STACK_HOST:$MINIO_PORT" 2>&1) ||
    die "minio: could not set up the buckets and users: $out"
  log "minio: buckets, policies and one user per service set (stack/minio_users.py; root for setup only)"
}

# One SCRAM user per service and the ACLs of the default namespace (idempotent), as the
# administrator. Test runs add the ACLs of their own namespaces (tests/harness.py).
kafka_admin_login() {
  local d="$RUN_DIR/kafka/tls"
  echo "$STACK_HOST:9094,$d/broker.crt,$d/broker.crt,$d/broker.key"
}
apply_kafka_users() {
  local py="${PRIVACAM_PYTHON:-$STACK_DIR/../.venv/bin/python}" out
  [ -x "$py" ] || die "kafka: no virtualenv to set up its users with ($py); run 'make setup' first"
  out=$("$py" "$STACK_DIR/kafka_users.py" apply --secrets "$RUN_DIR/secrets" --admin "$(kafka_admin_login)" 2>&1) ||
    die "kafka: could not set up the users and ACLs: $out"
  log "$out (stack/kafka_users.py)"
}

start_coturn() {
  local d="$RUN_DIR/coturn"
  mkdir -p "$d"
  # Self-signed cert for the turns: listener on 5349 (dev only).
  if [ ! -s "$d/turn-cert.pem" ]; then
    (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 825 \
      -subj "/CN=turn.privacam.local" -keyout "$d/turn-key.pem" -out "$d/turn-cert.pem" 2>/dev/null) ||
      die "coturn: openssl could not create the self-signed TLS cert"
  fi
  render turnserver.conf.tmpl "$d/turnserver.conf"
  launch coturn turnserver -c "$d/turnserver.conf"
}

start_prometheus() {
  local d="$RUN_DIR/prometheus"
  mkdir -p "$d/data"
  render prometheus.yml.tmpl "$d/prometheus.yml"
  # Catch config/rule mistakes here, with a readable message.
  local out
  out=$(promtool check config "$d/prometheus.yml" 2>&1) || die "prometheus: invalid config:"$'\n'"$out"
  launch prometheus prometheus --config.file="$d/prometheus.yml" \
    --storage.tsdb.path="$d/data" --storage.tsdb.retention.time=2d \
    --web.listen-address="$STACK_HOST:9090" --web.enable-lifecycle
}

# ------------------------------------------------------------- main ----
STARTED=() REUSED=() WAIT=() TO_START=()

# What usually squats on our ports, and how to stop it.
service_hint() {
  case $1 in
    redis-server) echo "service redis-server stop (or systemctl disable --now redis-server)" ;;
    turnserver) echo "service coturn stop (or systemctl disable --now coturn)" ;;
    prometheus) echo "service prometheus stop (or systemctl disable --now prometheus)" ;;
    *) echo "kill $2" ;;
  esac
}

# The file exists after any run, even if nothing was started.
[ -z "${STACK_STARTED_FILE:-}" ] || touch "$STACK_STARTED_FILE"

# Pass 1, before starting anything: reuse ours, reuse a healthy server already
# on the port, or plan to start it. A port conflict fails here, so a failed
# up.sh never leaves half a stack behind.
# A Kafka that an older up.sh started with another config (say, before its listeners
# required TLS and users) is ours to restart: its data stays.
restart_stale_kafka() {
  local pid
  pid=$(running_pid kafka) || return 0
  kafka_tls
  render server.properties.tmpl "$RUN_DIR/kafka/server.properties.next"
  if cmp -s "$RUN_DIR/kafka/server.properties.next" "$RUN_DIR/kafka/server.properties"; then
    rm -f "$RUN_DIR/kafka/server.properties.next"
    return 0
  fi
  rm -f "$RUN_DIR/kafka/server.properties.next"
  log "kafka: running with an older config (pid $pid); restarting it"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
  rm -f "$(pid_file kafka)"
}
if [[ " ${COMPONENTS[*]} " == *" kafka "* ]]; then restart_stale_kafka; fi

for name in "${COMPONENTS[@]}"; do
  if pid=$(running_pid "$name"); then
    log "$name: already running (pid $pid, started by an earlier up.sh), reusing"
    REUSED+=("$name")
    WAIT+=("$name") # it may still be starting
    continue
  fi
  rm -f "$(pid_file "$name")" # stale

  busy=()
  for port in $(component_ports "$name"); do
    if owner=$(port_owner "$port"); then busy+=("$port/tcp $owner"); fi
  done
  if [ "$name" = coturn ] && owner=$(port_owner 3478 u); then busy+=("3478/udp $owner"); fi
  if [ ${#busy[@]} -gt 0 ]; then
    read -r port prog opid <<<"${busy[0]}"
    if "healthy_$name"; then
      log "$name: $port already answers as $name ($prog, pid $opid; not started by this stack), reusing"
      REUSED+=("$name")
      continue
    fi
    why="does not answer as $name"
    [ "$name" != minio ] || why="$why (or rejects the credentials in $RUN_DIR/secrets)"
    die "$name: port $port on $STACK_HOST is taken by '$prog' (pid $opid), which $why.
  Fix: $(service_hint "$prog" "$opid"); or if it is a leftover of this stack: stack/down.sh $name.
  Then rerun stack/up.sh."
  fi
  TO_START+=("$name")
done

# Pass 2: start them all (in parallel: nobody waits for Kafka's JVM alone).
# STACK_STARTED_FILE is appended right away, so even a failed health check
# leaves a record of what must be stopped.
for name in "${TO_START[@]}"; do
  log "$name: starting (log: $(log_file "$name"))"
  "start_$name"
  [ -z "${STACK_STARTED_FILE:-}" ] || echo "$name" >>"$STACK_STARTED_FILE"
  STARTED+=("$name")
  WAIT+=("$name")
done

# Pass 3: wait for each to be healthy.
for name in "${WAIT[@]}"; do
  deadline=$((SECONDS + $(health_timeout "$name")))
  until "healthy_$name"; do
    if ! running_pid "$name" >/dev/null; then
      tail -n 40 "$(log_file "$name")" >&2 || true
      die "$name exited during startup (last lines of $(log_file "$name") above)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$(log_file "$name")" >&2 || true
      die "$name not healthy after $(health_timeout "$name")s (last lines of $(log_file "$name") above; stop it with stack/down.sh $name)"
    fi
    sleep 0.5
  done
  log "$name: healthy (${SECONDS}s since up.sh started)"
done

if [[ " ${COMPONENTS[*]} " == *" kafka "* ]]; then apply_kafka_users; fi
if [[ " ${COMPONENTS[*]} " == *" redis "* ]]; then apply_redis_acl; fi
if [[ " ${COMPONENTS[*]} " == *" minio "* ]]; then apply_minio_users; fi

# coturn reads its config once: one started before a config change (such as its Redis
# password) keeps the old one until restarted.
if [[ " ${REUSED[*]} " == *" coturn "* ]] && running_pid coturn >/dev/null; then
  render turnserver.conf.tmpl "$RUN_DIR/coturn/turnserver.conf.next"
  if ! cmp -s "$RUN_DIR/coturn/turnserver.conf.next" "$RUN_DIR/coturn/turnserver.conf"; then
    warn "coturn runs with an older config; to apply it: stack/down.sh coturn && stack/up.sh coturn"
  fi
  rm -f "$RUN_DIR/coturn/turnserver.conf.next"
fi

redis_url() { echo "redis://$1:$(secret "redis_$1_password")@$STACK_HOST:6379/0"; }

# Settings for services/tests: `set -a; . .run/stack.env; set +a`.
(
  umask 077
  cat >"$RUN_DIR/stack.env.tmp" <<EOF
# Generated by stack/up.sh; do not edit (contains secrets).
PRIVACAM_KAFKA_BOOTSTRAP_SERVERS=$STACK_HOST:9092
PRIVACAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL
PRIVACAM_KAFKA_CA_FILE=$RUN_DIR/kafka/tls/broker.crt
$("${PRIVACAM_PYTHON:-$STACK_DIR/../.venv/bin/python}" "$STACK_DIR/kafka_users.py" env --secrets "$RUN_DIR/secrets")
PRIVACAM_STACK_KAFKA_ADMIN=$(kafka_admin_login)
PRIVACAM_DEVICE_AUTH_REDIS_URL=$(redis_url device_auth)
PRIVACAM_CLIP_INGEST_REDIS_URL=$(redis_url clip_ingest)
PRIVACAM_RELAY_BROKER_REDIS_URL=$(redis_url relay_broker)
PRIVACAM_RETENTION_REDIS_URL=$(redis_url retention)
PRIVACAM_STACK_REDIS_COTURN_URL=redis://default:$REDIS_COTURN_PASSWORD@$STACK_HOST:6379/0
PRIVACAM_MINIO_ENDPOINT=$STACK_HOST:$MINIO_PORT
PRIVACAM_MINIO_SECURE=false
$("${PRIVACAM_PYTHON:-$STACK_DIR/../.venv/bin/python}" "$STACK_DIR/minio_users.py" env --secrets "$RUN_DIR/secrets")
PRIVACAM_TURN_SHARED_SECRET=$TURN_SECRET
PRIVACAM_TURN_URIS=turn:$STACK_HOST:3478?transport=udp,turn:$STACK_HOST:3478?transport=tcp
PRIVACAM_PROMETHEUS_URL=http://$STACK_HOST:9090
EOF
)
mv "$RUN_DIR/stack.env.tmp" "$RUN_DIR/stack.env"

echo "stack up: started: ${STARTED[*]:-none}; reused: ${REUSED[*]:-none}"
echo "settings: $RUN_DIR/stack.env"
