#!/usr/bin/env bash
# Start the one-node Kubernetes on this machine (idempotent: running
# components are left alone; warm run a few seconds):
#   containerd (own socket, root and state under $PRIVACAM_RUN_DIR/k8s),
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler on 127.0.0.1,
#   kubelet and kube-proxy; pods on a CNI bridge (10.244.0.0/24); host add-ons:
#   CoreDNS (cluster DNS, Service kube-system/kube-dns 10.96.0.10 -> 10.244.0.1:53)
#   and kube-router's firewall (enforces NetworkPolicies with iptables + ipset).
# Needs root (containerd, kubelet, iptables). Admin kubeconfig:
#   $PRIVACAM_RUN_DIR/k8s/pki/admin.kubeconfig
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "the one-node Kubernetes needs root (containerd, kubelet, iptables)"

bash "$K8S_DIR/install.sh"
bash "$K8S_DIR/build-addons.sh"
bash "$K8S_DIR/pki.sh"
PKI="$K8S_RUN/pki"
mkdir -p "$K8S_RUN"/{pids,logs,containerd,cni/net.d,kubelet,etcd,config}

# ------------------------------------------------------------ config files ----
cat >"$K8S_RUN/config/containerd.toml" <<CFG
version = 2
root = "$K8S_RUN/containerd/root"
state = "$K8S_RUN/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = "$CONTAINERD_SOCK.debug"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This sandbox refuses a negative OOM score adjustment.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_RUN/cni/net.d"
CFG

cat >"$K8S_RUN/cni/net.d/10-privacam.conflist" <<CFG
{
  "cniVersion": "1.0.0",
  "name": "privacam",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$K8S_POD_CIDR", "gateway": "$K8S_BRIDGE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$K8S_RUN/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
CFG

cat >"$K8S_RUN/config/kubelet.yaml" <<CFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
clusterDomain: cluster.local
clusterDNS: ["$K8S_DNS_IP"]
# What this sandbox allows: cgroup v1 with cgroupfs, no QoS cgroup tree.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
registerNode: true
CFG

# Cluster DNS: CoreDNS on the node's bridge address (pods reach it through the kube-dns
# Service below), answering for cluster.local and the reverse zones from the API; any
# other name gets NXDOMAIN at once (this machine has no upstream DNS to forward to).
cat >"$K8S_RUN/config/Corefile" <<CFG
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $K8S_BRIDGE_IP
    errors
    ready 127.0.0.1:$K8S_DNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $PKI/coredns.kubeconfig privacam
        # CoreDNS's default, as clusters ship it: a pod gone from a headless Service leaves
        # the callers' answers within the chart's 5 s preStop pause, so a rollout's last
        # calls never go to a replica that has stopped.
        ttl 5
    }
    cache 30
    loadbalance
}
.:53 {
    bind $K8S_BRIDGE_IP
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
CFG

# The add-ons' least privileges (bound to their certificates' users, see pki.sh) and the
# kube-dns Service: selector-less, its EndpointSlice names the host's CoreDNS.
cat >"$K8S_RUN/config/addons.yaml" <<CFG
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "privacam:coredns"}
rules:
- {apiGroups: [""], resources: [services, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "privacam:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "privacam:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "privacam:coredns"}]
---
# kube-router reads its node, and waits for every informer it makes (services and endpoints
# too, whichever of its controllers runs) before it starts; it writes nothing.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "privacam:kube-router"}
rules:
- {apiGroups: [""], resources: [pods, namespaces, nodes], verbs: [get, list, watch]}
- {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [services, endpoints], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "privacam:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "privacam:kube-router"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "privacam:kube-router"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $K8S_DNS_IP
  ports:
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: privacam.local-up.sh}
addressType: IPv4
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
endpoints:
- {addresses: ["$K8S_BRIDGE_IP"], conditions: {ready: true}, nodeName: $K8S_NODE}
CFG

# --------------------------------------------------------------- starting ----
start() { # name command...
  local name=$1
  shift
  if k8s_running_pid "$name" >/dev/null; then return 0; fi
  log "starting $name"
  setsid nohup "$@" >>"$(k8s_log_file "$name")" 2>&1 </dev/null &
  echo $! >"$(k8s_pid_file "$name")"
}
wait_for() { # what seconds command...
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "$what not ready after ${secs}s (logs: $K8S_RUN/logs/)"
}
https_ok() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$1"; }

B=$K8S_BIN
# br_netfilter: Service traffic between pods on the same bridge goes through iptables.
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || warn "net.bridge.bridge-nf-call-iptables not settable"
sysctl -qw net.ipv4.ip_forward=1
# The node's address is the pod bridge's gateway (the kubelet refuses a loopback node IP):
# made here, before the first pod, so the kubelet can listen on it; reachable from this
# machine and its pods only.
if ! ip -br addr show cni0 2>/dev/null | grep -qw "$K8S_NODE_IP/24"; then
  ip link show cni0 >/dev/null 2>&1 || ip link add cni0 type bridge
  ip addr add "$K8S_NODE_IP/24" dev cni0 2>/dev/null || true
  ip link set cni0 up
fi

start containerd containerd --config "$K8S_RUN/config/containerd.toml"
start etcd "$B/etcd" --name privacam --data-dir "$K8S_RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --initial-cluster "privacam=http://127.0.0.1:$K8S_ETCD_PEER_PORT" --listen-metrics-urls "" --quota-backend-bytes 1073741824
wait_for etcd 30 curl -sf "http://127.0.0.1:$K8S_ETCD_PORT/health"
start kube-apiserver "$B/kube-apiserver" --etcd-servers "http://127.0.0.1:$K8S_ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$K8S_API_PORT" \
  --service-cluster-ip-range "$K8S_SERVICE_CIDR" \
  --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --profiling=false --cert-dir "$K8S_RUN/pki/apiserver-generated"
wait_for kube-apiserver 90 https_ok "https://127.0.0.1:$K8S_API_PORT/readyz"
start kube-controller-manager "$B/kube-controller-manager" --kubeconfig "$PKI/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$K8S_SERVICE_CIDR" --controllers '*,-node-ipam-controller,-cloud-node-lifecycle-controller' \
  --cert-dir "$K8S_RUN/pki/controller-manager-generated"
start kube-scheduler "$B/kube-scheduler" --kubeconfig "$PKI/scheduler.kubeconfig" \
  --authentication-kubeconfig "$PKI/scheduler.kubeconfig" --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
bash "$K8S_DIR/images.sh" pause
start kubelet "$B/kubelet" --config "$K8S_RUN/config/kubelet.yaml" --kubeconfig "$PKI/kubelet.kubeconfig" \
  --root-dir "$K8S_RUN/kubelet" --hostname-override "$K8S_NODE" --node-ip "$K8S_NODE_IP" \
  --cert-dir "$K8S_RUN/pki/kubelet-generated"
start kube-proxy "$B/kube-proxy" --kubeconfig "$PKI/kube-proxy.kubeconfig" --hostname-override "$K8S_NODE" \
  --cluster-cidr "$K8S_POD_CIDR" --proxy-mode iptables --bind-address 127.0.0.1 \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 --conntrack-max-per-core 0
wait_for kubelet 60 curl -sf http://127.0.0.1:10248/healthz
# (after a restart etcd still holds the last Ready status: the kubelet's healthz comes first)
wait_for "node $K8S_NODE Ready" 120 bash -c "'$KUBECTL' --kubeconfig '$KUBECONFIG_ADMIN' get node '$K8S_NODE' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
# Host add-ons (after the node: CoreDNS binds the bridge's address).
kubectl_admin apply -f "$K8S_RUN/config/addons.yaml" >/dev/null
start coredns "$(k8s_addon_bin coredns)" -conf "$K8S_RUN/config/Corefile"
# kube-router: the NetworkPolicy firewall only (pod networking is the CNI bridge's, Services
# kube-proxy's). SIG Network's kube-network-policies cannot run here: see README.md.
start kube-router "$(k8s_addon_bin kube-router)" --kubeconfig "$PKI/kube-router.kubeconfig" \
  --hostname-override "$K8S_NODE" --run-firewall=true --run-router=false --run-service-proxy=false \
  --enable-cni=false --service-cluster-ip-range "$K8S_SERVICE_CIDR" --health-port 0 \
  --metrics-addr 127.0.0.1 --metrics-port "$K8S_NETPOL_METRICS_PORT"
wait_for "CoreDNS" 60 curl -sf "http://127.0.0.1:$K8S_DNS_READY_PORT/ready"
# Its chains appear once its informers have synced and its first full sync ran.
wait_for "kube-router" 60 iptables -S KUBE-ROUTER-FORWARD
log "ready: export KUBECONFIG=$KUBECONFIG_ADMIN"
