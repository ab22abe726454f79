#!/usr/bin/env bash
# One line per server: up/down, pid, ports. Cheap checks only (pid + port),
# no health probes, so it is instant. Exit 0 even if some are down.
#   stack/status.sh
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for name in "${ALL_COMPONENTS[@]}"; do
  ports=$(component_ports "$name")
  main=${ports%% *}
  if pid=$(running_pid "$name"); then
    if port_in_use "$main"; then state=up; else state=starting; fi
  elif owner=$(port_owner "$main"); then
    # Someone else's server on our port (up.sh would reuse it if healthy).
    state=up-external
    pid=${owner##* }
  else
    state=down
    pid=-
  fi
  printf '%-11s %-12s pid=%-8s %s:%s\n' "$name" "$state" "$pid" "$STACK_HOST" "${ports// /,}"
done
