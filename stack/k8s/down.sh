#!/usr/bin/env bash
# Stop the one-node Kubernetes started by up.sh: its host add-ons (CoreDNS, the
# NetworkPolicy agent), pods (through the CRI), then the components in reverse
# order. Data (etcd, PKI, images) is kept in $PRIVACAM_RUN_DIR/k8s;
# `down.sh --purge` removes it too.
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop() {
  local pid i
  pid=$(k8s_running_pid "$1") || { rm -f "$(k8s_pid_file "$1")"; return 0; }
  log "stopping $1 ($pid)"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$(k8s_pid_file "$1")"
}

stop coredns
stop kube-router
# kube-router leaves its firewall in place when it stops (pods stay protected across a
# restart), and its --cleanup-config touches routes and IPVS too: its chains (filter table:
# KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*) and ipsets (KUBE-SRC-*, KUBE-DST-*) go here.
for c in INPUT FORWARD OUTPUT; do
  iptables -S "$c" 2>/dev/null | grep -E -- '-j KUBE-ROUTER-' | sed 's/^-A /-D /' | while read -r rule; do
    eval "iptables $rule" 2>/dev/null || true
  done
done
kr_chains=$(iptables -S 2>/dev/null | sed -n 's/^-N \(KUBE-ROUTER-[^ ]*\|KUBE-POD-FW-[^ ]*\|KUBE-NWPLCY-[^ ]*\)$/\1/p')
for ch in $kr_chains; do iptables -F "$ch" 2>/dev/null || true; done
for ch in $kr_chains; do iptables -X "$ch" 2>/dev/null || true; done
if command -v ipset >/dev/null; then
  for s in $(ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST)-' || true); do ipset destroy "$s" 2>/dev/null || true; done
fi
stop kube-proxy
stop kubelet
# The kubelet leaves its pods running: remove them and their shims.
if k8s_running_pid containerd >/dev/null && command -v crictl >/dev/null; then
  crictl -r "unix://$CONTAINERD_SOCK" rmp -fa >/dev/null 2>&1 || true
fi
if k8s_running_pid containerd >/dev/null; then
  for t in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
  done
  sleep 1
  for t in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks rm -f "$t" >/dev/null 2>&1 || true
  done
fi
for c in kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do stop "$c"; done
# Shims whose containerd is gone, started from our state dir.
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do kill "$p" 2>/dev/null || true; done
# kube-proxy's iptables chains and the pod bridge.
if [ -x "$K8S_BIN/kube-proxy" ]; then "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
# Pod networks whose sandbox was killed rather than stopped through the CRI: their veths
# (on our bridge), containerd's netns mounts (cni-*, inside our run dir's pods only: no
# other CNI user runs here), the bridge plugin's masquerade chains (named for our network)
# and the kubelet's canary chains.
for v in $(ip -o link show master cni0 2>/dev/null | sed -n 's/^[0-9]*: \([^@:]*\).*/\1/p'); do
  ip link del "$v" 2>/dev/null || true
done
ip link del cni0 2>/dev/null || true
for n in $(ip netns list 2>/dev/null | sed -n 's/^\(cni-[0-9a-f-]*\).*/\1/p'); do ip netns del "$n" 2>/dev/null || true; done
iptables -t nat -S POSTROUTING 2>/dev/null | grep -F 'name: \"privacam\"' | while read -r _ chain rest; do
  target=$(sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p' <<<"$rest")
  eval "iptables -t nat -D $chain $rest" 2>/dev/null || true
  [ -z "$target" ] || { iptables -t nat -F "$target" 2>/dev/null; iptables -t nat -X "$target" 2>/dev/null; } || true
done || true
for t in nat filter mangle; do iptables -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null || true; done
{ grep -o " $K8S_RUN/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
if [ "${1:-}" = --purge ]; then
  log "removing $K8S_RUN"
  rm -rf "$K8S_RUN"
fi
log "stopped"
