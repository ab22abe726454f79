#!/usr/bin/env bash
# Install what the one-node Kubernetes needs, only if missing (warm: ~1 s):
# containerd, runc and the CNI plugins from Debian (their system services are
# not started: up.sh runs its own containerd), mmdebstrap for the images, ipset
# (kube-router, the NetworkPolicy agent, drives it and iptables), and
# the Kubernetes/etcd binaries (build.sh) and helm (same pin and cache as
# scripts/check_chart.sh).
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

want=("$CONTAINERD_DEB" "$RUNC_DEB" "$CNI_DEB" mmdebstrap iptables conntrack ipset)
missing=()
for p in "${want[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from privacam stack/k8s/install.sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
  if ! as_root "${apt[@]}" "${missing[@]}"; then
    as_root apt-get update -q
    as_root "${apt[@]}" "${missing[@]}"
  fi
  [ "$own_policy" -eq 0 ] || { as_root rm -f /usr/sbin/policy-rc.d; trap - EXIT; }
fi

bash "$K8S_DIR/build.sh"

# scripts/check_chart.sh builds the same helm into <dir>.partial: let a build under way finish.
for ((i = 0; i < 180; i++)); do
  [ ! -x "$HELM" ] && [ -d "$(dirname "$HELM").partial" ] || break
  [ "$i" -gt 0 ] || log "waiting for a helm build under way ($(dirname "$HELM").partial)"
  sleep 5
done
if [ ! -x "$HELM" ]; then
  # The same build as scripts/check_chart.sh's go_install (shared cache entry).
  minor=$(sed -n 's/^HELM_K8S_MINOR=//p' "$REPO_DIR/scripts/check_chart.sh")
  log "helm $HELM_VERSION: go install (once)"
  dir=$(dirname "$HELM")
  rm -rf "$dir.partial" && mkdir -p "$dir.partial"
  GOBIN="$dir.partial" CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 19 \
    go install -p 1 -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || die "helm go install failed"
  mv "$dir.partial" "$dir"
fi
