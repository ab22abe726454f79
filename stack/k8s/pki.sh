#!/usr/bin/env bash
# The one-node cluster's own PKI under $PRIVACAM_RUN_DIR/k8s/pki (created once;
# delete that directory to start over). One CA signs everything: the API
# server's serving cert, client certs for admin/controller-manager/scheduler/
# kubelet/kube-proxy, the kubelet's serving cert; plus the service-account key.
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PKI="$K8S_RUN/pki"
[ -f "$PKI/.complete" ] && exit 0
mkdir -p "$PKI" && chmod 700 "$PKI"
cd "$PKI"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=privacam-k8s-ca"
# cert <name> <subject> <extensions>
cert() {
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
ossl genrsa -out sa.key 2048
ossl rsa -in sa.key -pubout -out sa.pub
for n in admin controller-manager scheduler kubelet kube-proxy; do
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
