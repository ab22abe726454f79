#!/usr/bin/env bash
# The one-node cluster's own PKI under $PRIVACAM_RUN_DIR/k8s/pki (created once;
# delete that directory to start over). One CA signs everything: the API
# server's serving cert, client certs for admin/controller-manager/scheduler/
# kubelet/kube-proxy and the host add-ons (CoreDNS, kube-router: each
# bound by up.sh to a ClusterRole of what it reads), the kubelet's serving
# cert; plus the service-account key. A file made by an older version of this
# script is kept; one it did not make (an add-on's) is added.
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PKI="$K8S_RUN/pki"
CLIENTS=(admin controller-manager scheduler kubelet kube-proxy coredns kube-router)
complete() {
  local n
  [ -f "$PKI/.complete" ] || return 1
  for n in "${CLIENTS[@]}"; do [ -f "$PKI/$n.kubeconfig" ] || return 1; done
}
complete && exit 0
mkdir -p "$PKI" && chmod 700 "$PKI"
cd "$PKI"
ossl() { openssl "$@" 2>/dev/null; }
[ -f ca.crt ] || ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=privacam-k8s-ca"
# cert <name> <subject> <extensions>
cert() {
  [ -f "$1.crt" ] && return 0
  ossl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
  printf '%s\n' "$3" >"$1.ext"
  ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
client="extendedKeyUsage=clientAuth"
cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$K8S_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert kubelet-serving "/CN=$K8S_NODE" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$K8S_NODE_IP,DNS:$K8S_NODE,DNS:localhost"
cert admin "/O=system:masters/CN=privacam-admin" "$client"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
cert controller-manager "/CN=system:kube-controller-manager" "$client"
cert scheduler "/CN=system:kube-scheduler" "$client"
cert kubelet "/O=system:nodes/CN=system:node:$K8S_NODE" "$client"
cert kube-proxy "/CN=system:kube-proxy" "$client"
cert coredns "/CN=privacam:coredns" "$client"
cert kube-router "/CN=privacam:kube-router" "$client"
[ -f sa.key ] || ossl genrsa -out sa.key 2048
[ -f sa.pub ] || ossl rsa -in sa.key -pubout -out sa.pub
for n in "${CLIENTS[@]}"; do
  [ -f "$n.kubeconfig" ] && continue
  cat >"$n.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: privacam
  cluster: {server: "https://127.0.0.1:$K8S_API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $n
  user: {client-certificate: "$PKI/$n.crt", client-key: "$PKI/$n.key"}
contexts:
- name: privacam
  context: {cluster: privacam, user: $n}
current-context: privacam
KC
done
chmod 600 ./*.key
touch .complete
log "PKI created in $PKI"
