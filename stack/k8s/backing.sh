#!/usr/bin/env bash
# The backing servers the chart's pods use: a second local stack (stack/up.sh, the same
# scripts, users and ACLs as the developers' stack) with a run dir of its own,
# $PRIVACAM_RUN_DIR/k8s/backing, listening on the pod bridge's gateway ($K8S_BRIDGE_IP)
# instead of 127.0.0.1, which inside a pod is the pod's own loopback.
#   stack/k8s/backing.sh up      start (or reuse) Kafka, MinIO, Redis, coturn; prints the stack.env path
#   stack/k8s/backing.sh down    stop them (data kept; `down --purge` deletes it)
# Why not servers in the cluster: Kafka would need a JVM image and MinIO a Go one built
# here from Debian's archive (minutes per cold CI run, and more code of ours), while this
# stack is the one the integration tests already prove. coturn is here for the cameras
# and apps (relay-broker only mints its credentials and reads its traffic reports from
# Redis); Prometheus is left out: nothing scrapes the cluster's pods here.
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# MinIO binds loopback too: ports apart from the developers' stack's 9000 and 9001.
export PRIVACAM_RUN_DIR="$K8S_RUN/backing" PRIVACAM_STACK_HOST="$K8S_BRIDGE_IP" PRIVACAM_STACK_MINIO_PORT=9010
BACKING=(kafka minio redis coturn)
case "${1:-}" in
  up)
    [ -n "$(ip -o addr show dev cni0 to "$K8S_BRIDGE_IP" 2>/dev/null)" ] ||
      die "no pod bridge with $K8S_BRIDGE_IP: start the cluster first (stack/k8s/up.sh)"
    bash "$REPO_DIR/stack/up.sh" "${BACKING[@]}" >&2
    echo "$PRIVACAM_RUN_DIR/stack.env"
    ;;
  down)
    shift
    [ -d "$PRIVACAM_RUN_DIR" ] || exit 0
    bash "$REPO_DIR/stack/down.sh" "$@" "${BACKING[@]}"
    ;;
  *) die "usage: $0 up | down [--purge]" ;;
esac
