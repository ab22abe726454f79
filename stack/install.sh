#!/usr/bin/env bash
# Install what the local stack needs, only if missing (warm run: ~1 second).
#   stack/install.sh [kafka|minio|redis|coturn|prometheus ...]   (default: all)
# Debian packages go to the system; Kafka jars and the MinIO binary go to the
# cache dir (${PRIVACAM_CACHE_DIR:-<repo>/.cache}), keyed by version.
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_components "$@"

# One install at a time per cache dir (e.g. two test runs starting together).
mkdir -p "$CACHE_DIR"
exec 8>"$CACHE_DIR/.install.lock"
flock 8

# ---------------------------------------------------------------- Debian ----
install_debian_packages() {
  local wanted=() missing=() p
  # Helpers used by up.sh health checks/secrets (usually already present).
  command -v curl >/dev/null || wanted+=(curl)
  command -v openssl >/dev/null || wanted+=(openssl)
  command -v ss >/dev/null || wanted+=(iproute2)
  # The CLI's zsh completion script is checked by zsh itself (tests/unit/sdk/test_completion.py).
  command -v zsh >/dev/null || wanted+=(zsh)
  for c in "${COMPONENTS[@]}"; do
    case $c in
      redis) wanted+=(redis-server) ;; # pulls redis-tools (redis-cli)
      coturn) wanted+=(coturn) ;;      # ships turnutils_* test clients
      prometheus) wanted+=(prometheus) ;; # ships promtool
    esac
  done
  for p in "${wanted[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done

  if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    # Debian starts a package's service on install; those system-wide servers
    # would squat on our ports. policy-rc.d=101 tells invoke-rc.d/systemd
    # helpers not to start anything (docker images already ship one).
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\n# temporary, from privacam stack/install.sh\nexit 101\n' |
        as_root tee /usr/sbin/policy-rc.d >/dev/null
      as_root chmod 755 /usr/sbin/policy-rc.d
      own_policy=1
      trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
    # Only refresh package lists when they are missing or the install fails
    # (apt-get update costs ~10-30 s and is usually already done).
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null ||
      ! as_root "${apt[@]}" "${missing[@]}"; then
      log "apt: refreshing package lists and retrying"
      as_root apt-get update -q
      as_root "${apt[@]}" "${missing[@]}"
    fi
    if [ "$own_policy" -eq 1 ]; then
      as_root rm -f /usr/sbin/policy-rc.d
      trap - EXIT
    fi
    stop_system_services "${missing[@]}"
  fi
  check_debian_versions
}

# Make sure the distro's own instances of freshly installed servers are not
# running (and, under systemd, not started at boot): up.sh runs its own.
stop_system_services() {
  local p
  for p in "$@"; do
    case $p in redis-server | coturn | prometheus) ;; *) continue ;; esac
    if [ -d /run/systemd/system ]; then
      log "systemd: disabling the system-wide $p service (the stack runs its own)"
      as_root systemctl disable --now "$p" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$p" ]; then
      as_root service "$p" stop >/dev/null 2>&1 || true
    fi
  done
}

check_debian_versions() {
  local pkg var want have
  for pkg in redis-server:REDIS_DEB_VERSION coturn:COTURN_DEB_VERSION prometheus:PROMETHEUS_DEB_VERSION; do
    var=${pkg#*:}
    want=${!var}
    have=$(dpkg-query -W -f='${Version}' "${pkg%%:*}" 2>/dev/null) || continue
    [ "$have" = "$want" ] ||
      warn "${pkg%%:*} is $have, versions.env expects $want (update stack/versions.env if this is a Debian security update)"
  done
}

# ----------------------------------------------------------------- Kafka ----
install_kafka() {
  # The marker is written last, so an interrupted download is redone.
  [ -f "$KAFKA_HOME/.complete" ] && return 0
  require_java
  command -v mvn >/dev/null || die "mvn not found: needed once to fetch Kafka jars (Debian: apt-get install -y maven)"
  log "kafka: fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_HOME/libs"
  mkdir -p "$KAFKA_HOME"
  local tmp="$KAFKA_HOME/libs.tmp.$$"
  rm -rf "$tmp"
  # (Debian's Maven 3.8 prints stray colour codes even in batch mode: strip them.)
  mvn -q -B -f "$STACK_DIR/kafka/pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$KAFKA_LOG4J_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' ||
    { rm -rf "$tmp"; die "kafka: mvn failed to fetch the jars (network to Maven Central? see output above)"; }
  rm -rf "$KAFKA_HOME/libs"
  mv "$tmp" "$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/.complete"
}

# ----------------------------------------------------------------- MinIO ----
install_minio() {
  [ -x "$MINIO_BIN" ] && return 0
  command -v go >/dev/null ||
    die "go not found: needed once to build MinIO (install Go >= 1.26.7, the one Go version the platform states, see https://go.dev/doc/install, and put it on PATH)"
  log "minio: building github.com/minio/minio@$MINIO_VERSION (first time only; takes several minutes)"
  # Static binary like upstream releases; no C toolchain needed.
  GOBIN="$(dirname "$MINIO_BIN")" CGO_ENABLED=0 \
    go install "github.com/minio/minio@$MINIO_VERSION" ||
    die "minio: go install failed (see output above)"
}

# ------------------------------------------------------------------ main ----
install_debian_packages
for c in "${COMPONENTS[@]}"; do
  case $c in
    kafka) install_kafka ;;
    minio) install_minio ;;
  esac
done
