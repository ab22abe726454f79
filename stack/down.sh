#!/usr/bin/env bash
# Stop servers started by stack/up.sh (by pid file; never by name).
#   stack/down.sh [--purge] [kafka|minio|redis|coturn|prometheus ...]  (default: all)
# --purge also deletes their data under the run dir (all components: the whole
# run dir incl. secrets and stack.env). The download cache is never touched.
# STACK_STARTED_FILE=<path> (as given to up.sh): stop only the servers listed
# there, i.e. those that up.sh run started (none if the file is empty).
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PURGE=0
args=()
for a in "$@"; do
  case $a in
    --purge) PURGE=1 ;;
    -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
parse_components "${args[@]}"

if [ -n "${STACK_STARTED_FILE:-}" ]; then
  listed=" $(tr '\n' ' ' <"$STACK_STARTED_FILE" 2>/dev/null || true) "
  keep=()
  for c in "${COMPONENTS[@]}"; do
    if [[ $listed == *" $c "* ]]; then keep+=("$c"); fi
  done
  [ ${#keep[@]} -gt 0 ] || { log "nothing to stop: $STACK_STARTED_FILE lists no server"; exit 0; }
  COMPONENTS=("${keep[@]}")
fi

[ -d "$RUN_DIR" ] || { log "nothing to do: no run dir ($RUN_DIR)"; exit 0; }
mkdir -p "$RUN_DIR/pids"
exec 9>"$RUN_DIR/.lock"
flock 9

# Kafka needs time for a clean controlled shutdown (flushes logs, so the next
# start skips recovery); the others stop in well under a second.
stop_timeout() { case $1 in kafka | minio) echo 30 ;; *) echo 10 ;; esac; }

FAILED=()
stop_one() {
  local name=$1 pid port
  if ! pid=$(running_pid "$name"); then
    rm -f "$(pid_file "$name")"
    port=$(component_ports "$name")
    port=${port%% *}
    if port_in_use "$port"; then
      log "$name: not started by this stack (port $port is served by $(port_owner "$port")); leaving it alone"
    else
      log "$name: not running"
    fi
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + $(stop_timeout "$name")))
  while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if pid_alive "$pid"; then
    warn "$name (pid $pid) ignored SIGTERM for $(stop_timeout "$name")s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  if pid_alive "$pid"; then
    FAILED+=("$name")
    warn "$name (pid $pid) is still alive"
    return 0
  fi
  rm -f "$(pid_file "$name")"
  log "$name: stopped (pid $pid)"
}

# Reverse start order (Prometheus first, Kafka last).
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_one "${COMPONENTS[$i]}"; done

[ ${#FAILED[@]} -eq 0 ] || die "could not stop: ${FAILED[*]} (data not purged)"

if [ "$PURGE" -eq 1 ]; then
  if [ ${#COMPONENTS[@]} -eq ${#ALL_COMPONENTS[@]} ]; then
    log "purging $RUN_DIR (data, logs, secrets, stack.env)"
    rm -rf "$RUN_DIR"
  else
    for name in "${COMPONENTS[@]}"; do
      log "$name: purging $RUN_DIR/$name"
      rm -rf "${RUN_DIR:?}/$name"
    done
  fi
fi
