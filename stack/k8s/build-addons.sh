#!/usr/bin/env bash
# Build (once) the cluster's host add-ons from the Go module proxy:
#   coredns               cluster DNS (coredns/: CoreDNS with only the plugins up.sh's Corefile uses)
#   kube-router           the NetworkPolicy agent (only its firewall is run: iptables + ipset)
# into $PRIVACAM_CACHE_DIR/k8s-addons/<name>-<version>[-<hash of its build dir>]/.
# Warm run: a file test, under a second.
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# build <name> <version> <build dir> <module>        go build of a module of our own
# build <name> <version> "" <package>               go install <package>@<version>
build() {
  local name=$1 version=$2 dir=$3 module=$4 bin tmp
  bin=$(k8s_addon_bin "$name")
  [ -x "$bin" ] && return 0
  if [ -n "$dir" ]; then
    dir="$K8S_DIR/$dir"
    grep -Eq "^(require)?[[:space:]]+${module//./\\.} ${version//./\\.}\$" "$dir/go.mod" ||
      die "$dir/go.mod does not require $module $version (versions.env): change both"
  fi
  command -v go >/dev/null || die "go not found: needed once to build $name $version"
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.k8s-addons-build.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    log "building $name $version (first time only)"
    tmp="$(dirname "$bin").partial.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    # nice, and one job unless told: the machine is shared with timing-sensitive tests.
    export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
    if [ -n "$dir" ]; then
      (cd "$dir" && nice -n 19 go build -p "$K8S_BUILD_JOBS" -trimpath -ldflags "-s -w" -o "$tmp/$name" .)
    else
      GOBIN="$tmp" nice -n 19 go install -p "$K8S_BUILD_JOBS" -trimpath -ldflags "-s -w $5" "$module@$version"
    fi || { rm -rf "$tmp"; die "go build of $name failed (see output above)"; }
    rm -rf "$(dirname "$bin")"
    mv "$tmp" "$(dirname "$bin")"
    log "built $bin"
  fi
  exec 9>&-
}

build coredns "$COREDNS_VERSION" coredns github.com/coredns/coredns
# Its own go.mod has no replace directives, so `go install` builds it at exactly its pins.
kr=github.com/cloudnativelabs/kube-router/v2
build kube-router "$KUBE_ROUTER_VERSION" "" "$kr/cmd/kube-router" "-X $kr/pkg/version.Version=$KUBE_ROUTER_VERSION"
