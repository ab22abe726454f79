# shellcheck shell=bash
# Shared helpers for stack/k8s/*.sh (sourced, not executed).
K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$K8S_DIR/../.." && pwd)"
CACHE_DIR="${PRIVACAM_CACHE_DIR:-$REPO_DIR/.cache}"
RUN_DIR="${PRIVACAM_RUN_DIR:-$REPO_DIR/.run}"
# shellcheck source=stack/k8s/versions.env
source "$K8S_DIR/versions.env"
K8S_BIN="$CACHE_DIR/k8s-$KUBERNETES_VERSION/bin"
K8S_RUN="$RUN_DIR/k8s"
KUBECONFIG_ADMIN="$K8S_RUN/pki/admin.kubeconfig"
KUBECTL="$K8S_BIN/kubectl"
HELM_VERSION=$(sed -n 's/^HELM_VERSION=//p' "$REPO_DIR/scripts/check_chart.sh")
HELM="$CACHE_DIR/tools/helm-$HELM_VERSION/helm"

# Parallel jobs of the one-time Go builds: 1 by default (the machine is shared with
# timing-sensitive tests); .ci/run builds after the tests, on an idle machine, with 2.
K8S_BUILD_JOBS="${PRIVACAM_K8S_BUILD_JOBS:-1}"

log() { printf '[k8s] %s\n' "$*" >&2; }
warn() { printf '[k8s] WARNING: %s\n' "$*" >&2; }
die() { printf '[k8s] ERROR: %s\n' "$*" >&2; exit 1; }

# Cluster layout: everything on loopback; pods on a bridge (cni0) of their own.
K8S_NODE=privacam-node
K8S_API_PORT=6443
K8S_ETCD_PORT=23790      # not 2379: leave etcd's default port to anyone else's etcd
K8S_ETCD_PEER_PORT=23800
K8S_SERVICE_CIDR=10.96.0.0/16
K8S_SERVICE_IP=10.96.0.1
K8S_DNS_IP=10.96.0.10
K8S_POD_CIDR=10.244.0.0/24
K8S_BRIDGE_IP=10.244.0.1
K8S_NODE_IP=$K8S_BRIDGE_IP
# Host add-ons: CoreDNS answers on $K8S_BRIDGE_IP:53 (the kube-dns Service's endpoint),
# ready on 127.0.0.1:$K8S_DNS_READY_PORT; kube-router's metrics (its health port is off:
# it would listen on every interface).
K8S_DNS_READY_PORT=10181
K8S_NETPOL_METRICS_PORT=10330
CONTAINERD_SOCK="$K8S_RUN/containerd/containerd.sock"
# The pause image the sandbox runs (built locally by images.sh, never pulled).
PAUSE_IMAGE=localhost/privacam/pause:3.10

# Components, in start order, and the string their command line must contain.
K8S_COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns kube-router)
k8s_pid_file() { echo "$K8S_RUN/pids/$1.pid"; }
k8s_log_file() { echo "$K8S_RUN/logs/$1.log"; }
k8s_running_pid() {
  local f pid cmd
  f=$(k8s_pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmd == *"$1"*"$K8S_RUN"* ]] || return 1
  echo "$pid"
}
# Host add-ons (build-addons.sh): keyed by version and by their build dir's files.
k8s_addon_bin() { # name -> path of its cached binary
  local dir version
  case $1 in
  coredns) dir=coredns version=$COREDNS_VERSION ;;
  kube-router) echo "$CACHE_DIR/k8s-addons/kube-router-$KUBE_ROUTER_VERSION/kube-router" && return 0 ;;
  *) return 1 ;;
  esac
  echo "$CACHE_DIR/k8s-addons/$1-$version-$(cat "$K8S_DIR/$dir"/go.mod "$K8S_DIR/$dir"/go.sum "$K8S_DIR/$dir"/*.go | sha256sum | cut -c1-8)/$1"
}
kubectl_admin() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
PRIVACAM_IMAGE_REPO=localhost/privacam/privacam
