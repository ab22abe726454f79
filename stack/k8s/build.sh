#!/usr/bin/env bash
# Build (once) the Kubernetes control plane, kubelet, kubectl and etcd from
# the Go module proxy into $PRIVACAM_CACHE_DIR/k8s-<version>/bin.
# build/go.mod requires k8s.io/kubernetes and replaces its staging modules with
# their published v0.x releases. Warm run: a file test, under a second.
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing() {
  local c
  for c in "${K8S_CMDS[@]}" etcd; do [ -x "$K8S_BIN/$c" ] || echo "$c"; done
}
[ -z "$(missing)" ] && exit 0
command -v go >/dev/null || die "go not found: needed once to build Kubernetes $KUBERNETES_VERSION"
mkdir -p "$CACHE_DIR" "$K8S_BIN"
exec 9>"$CACHE_DIR/.k8s-build.lock"
flock 9
todo=$(missing | tr "\n" " ")
[ -z "$todo" ] && exit 0

minor=${KUBERNETES_VERSION#v1.}
minor=${minor%%.*}
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ld="-s -w"
# Without the version stamp the binaries say v0.0.0 and helm's kubeVersion check fails.
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
done
log "building $(echo $todo) of Kubernetes $KUBERNETES_VERSION / etcd $ETCD_VERSION (first time only; ~15 minutes at -p 1)"
pkgs=()
for c in $todo; do [ "$c" = etcd ] || pkgs+=("k8s.io/kubernetes/cmd/$c"); done
tmp="$K8S_BIN/.partial.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
(
  cd "$K8S_DIR/build"
  # nice, and one job unless told: the machine is shared with timing-sensitive tests.
  export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
  if [ ${#pkgs[@]} -gt 0 ]; then
    nice -n 19 go build -p "$K8S_BUILD_JOBS" -trimpath -ldflags "$ld" -o "$tmp/" "${pkgs[@]}"
  fi
  if [[ " $todo " == *" etcd "* ]]; then
    nice -n 19 go build -p "$K8S_BUILD_JOBS" -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
  fi
) || { rm -rf "$tmp"; die "go build failed (see output above)"; }
mv "$tmp"/* "$K8S_BIN/"
rmdir "$tmp"
log "built into $K8S_BIN"
