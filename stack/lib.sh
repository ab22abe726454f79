# shellcheck shell=bash
# Shared helpers for stack/*.sh (sourced, not executed).
# Everything lives in two dirs (both git-ignored): the cache (downloads and
# builds, safe to keep across runs) and the run dir (data, logs, pids, secrets).

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$STACK_DIR/.." && pwd)"
CACHE_DIR="${PRIVACAM_CACHE_DIR:-$REPO_DIR/.cache}"
RUN_DIR="${PRIVACAM_RUN_DIR:-$REPO_DIR/.run}"
# The address every server listens on and advertises: loopback, or (stack/k8s/backing.sh)
# the pod bridge's gateway, for a second stack with a run dir of its own that pods can reach.
STACK_HOST="${PRIVACAM_STACK_HOST:-127.0.0.1}"
# MinIO also listens on loopback whatever its address, so a second stack needs other ports
# (the S3 API here, the console on the next one).
MINIO_PORT="${PRIVACAM_STACK_MINIO_PORT:-9000}"

# shellcheck source=stack/versions.env
source "$STACK_DIR/versions.env"

ALL_COMPONENTS=(kafka minio redis coturn prometheus)
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
MINIO_BIN="$CACHE_DIR/minio-$MINIO_VERSION/bin/minio"

log() { printf '[stack] %s\n' "$*" >&2; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root to run: $* (run as root or install sudo)"
  fi
}

# Parse component names into COMPONENTS (default: all), rejecting typos early.
parse_components() {
  COMPONENTS=()
  local c
  for c in "$@"; do
    case " ${ALL_COMPONENTS[*]} " in
      *" $c "*) COMPONENTS+=("$c") ;;
      *) die "unknown component '$c' (known: ${ALL_COMPONENTS[*]})" ;;
    esac
  done
  if [ ${#COMPONENTS[@]} -eq 0 ]; then COMPONENTS=("${ALL_COMPONENTS[@]}"); fi
}

# Ports each server listens on (TCP; coturn also UDP). First = health port.
component_ports() {
  case $1 in
    kafka) echo "9092 9093 9094" ;;
    minio) echo "$MINIO_PORT $((MINIO_PORT + 1))" ;;
    redis) echo "6379" ;;
    coturn) echo "3478 5349" ;;
    prometheus) echo "9090" ;;
  esac
}

# A string that must appear in the server's command line; guards against
# acting on a recycled pid from a stale pid file.
component_cmd_marker() {
  case $1 in
    kafka) echo "kafka.Kafka" ;;
    minio) echo "$RUN_DIR/minio/data" ;; # not the binary: its path moves with PRIVACAM_CACHE_DIR
    redis) echo "redis-server" ;;
    coturn) echo "turnserver" ;;
    prometheus) echo "prometheus" ;;
  esac
}

pid_file() { echo "$RUN_DIR/pids/$1.pid"; }
log_file() { echo "$RUN_DIR/logs/$1.log"; }

# True while the process exists and is not a zombie (our servers are
# reparented to PID 1, which may take a moment to reap them).
pid_alive() {
  local state
  # /proc/<pid>/stat is "pid (comm) state ..."; comm may contain spaces.
  state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Print the pid of a server this stack started, if it is still alive.
running_pid() {
  local f pid cmd
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$(component_cmd_marker "$1")"* ]] || return 1
  echo "$pid"
}

# "name pid" of whatever listens on a local TCP (or UDP with proto=u) port on our
# address (or on every address); empty output and status 1 if the port is free.
port_owner() {
  local port=$1 proto=${2:-t} line
  line=$(ss -Hl"$proto"np "sport = :$port" 2>/dev/null | awk -v host="$STACK_HOST" '
    { addr = $4; sub(/:[0-9]+$/, "", addr) }
    addr == host || addr == "[::ffff:" host "]" || addr == "0.0.0.0" || addr == "*" || addr == "[::]" { print; exit }')
  [ -n "$line" ] || return 1
  # users:(("redis-server",pid=123,fd=6)) -> "redis-server 123"; "? ?" when
  # the owner is not visible to us (another user's process, no root).
  sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 \2/p' <<<"$line" | grep . || echo "? ?"
}

port_in_use() { port_owner "$1" "${2:-t}" >/dev/null; }

# Cheap TCP connect check without external tools.
tcp_open() { (exec 3<>"/dev/tcp/$STACK_HOST/$1") 2>/dev/null; }

# Secrets are generated on first use and never have a default value.
secret() {
  local f="$RUN_DIR/secrets/$1" bytes=${2:-24}
  if [ ! -s "$f" ]; then
    mkdir -p "$RUN_DIR/secrets"
    chmod 700 "$RUN_DIR/secrets"
    (umask 077 && openssl rand -hex "$bytes" >"$f.tmp" && mv "$f.tmp" "$f")
  fi
  cat "$f"
}

# Java used both by install (version check) and up (running Kafka).
require_java() {
  command -v java >/dev/null ||
    die "java not found: Kafka $KAFKA_VERSION needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
  local major
  major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [ "${major%%.*}" -ge 17 ] 2>/dev/null ||
    die "java $major is too old: Kafka $KAFKA_VERSION needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
}

# Run a Kafka CLI class (e.g. org.apache.kafka.tools.ClusterTool) from the
# cached jars, with a quiet logger, a small heap and a hard time limit.
kafka_tool() {
  timeout "${KAFKA_TOOL_TIMEOUT:-60}" java -Xmx128m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STACK_DIR/config/kafka-tools-log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}
