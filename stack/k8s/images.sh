#!/usr/bin/env bash
# Build the images the one-node Kubernetes runs, without a registry, and import
# them into its containerd (namespace k8s.io):
#   stack/k8s/images.sh pause      the sandbox image ($PAUSE_IMAGE): a static Go binary
#   stack/k8s/images.sh privacam   the services' image: Debian bookworm (mmdebstrap from
#                                  Debian's archive) + python3.11 + a virtualenv holding
#                                  uv.lock's runtime dependencies and the project's wheel
# Archives are cached under $PRIVACAM_CACHE_DIR/k8s-images, keyed by their inputs
# (pause: its source; privacam: uv.lock, pyproject and the tracked sources), so a
# warm run only re-imports when containerd lacks the image. Prints the image name.
set -euo pipefail
# shellcheck source=stack/k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IMG_CACHE="$CACHE_DIR/k8s-images"
mkdir -p "$IMG_CACHE"
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

import() { # name archive
  if [ -n "${K8S_IMAGES_BUILD_ONLY:-}" ]; then echo "$1"; return 0; fi
  if ! ctr_ images ls -q | grep -qxF "$1"; then
    log "importing $1"
    ctr_ images import "$2" >/dev/null
    ctr_ images ls -q | grep -qxF "$1" || die "import of $2 did not create $1"
  fi
  echo "$1"
}

pause_image() {
  local key out
  key=$(cat "$K8S_DIR/pause/main.go" "$K8S_DIR/pause/go.mod" | sha256sum | cut -c1-12)
  out="$IMG_CACHE/pause-$key.tar"
  if [ ! -f "$out" ]; then
    log "building the pause image"
    local root
    root=$(mktemp -d)
    (cd "$K8S_DIR/pause" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 19 go build -p 1 -trimpath -ldflags "-s -w" -o "$root/pause" .)
    python3 "$K8S_DIR/oci.py" --rootfs "$root" --name "$PAUSE_IMAGE" --out "$out" \
      --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
    rm -rf "$root"
  fi
  import "$PAUSE_IMAGE" "$out"
}

privacam_key() {
  (cd "$REPO_DIR" && { cat uv.lock pyproject.toml "$K8S_DIR/images.sh"; git ls-files -s services core sdk/privacam_sdk protos; git diff HEAD -- services core sdk/privacam_sdk protos; } | sha256sum | cut -c1-12)
}

privacam_image() {
  local key name out
  key=$(privacam_key)
  name="$PRIVACAM_IMAGE_REPO:k8s-$key"
  out="$IMG_CACHE/privacam-$key.tar"
  if [ ! -f "$out" ]; then
    log "building $name (mmdebstrap + pip; a few minutes)"
    local work
    work=$(mktemp -d "$IMG_CACHE/build.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    # Stubs and the wheel from the working tree (gen/ as `make protos` writes it).
    (cd "$REPO_DIR" && PYTHON="$REPO_DIR/.venv/bin/python" bash scripts/gen_protos.sh "$work/src/gen" >/dev/null)
    mkdir -p "$work/src"
    (cd "$REPO_DIR" && cp -r pyproject.toml README.md uv.lock services core "$work/src/")
    mkdir -p "$work/src/sdk" && cp -r "$REPO_DIR/sdk/privacam_sdk" "$work/src/sdk/"
    find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
    "$UV" build --quiet --wheel --out-dir "$work/wheel" "$work/src"
    "$UV" export --quiet --frozen --no-dev --no-emit-project --format requirements-txt \
      --project "$REPO_DIR" -o "$work/requirements.txt"
    # The locked wheels are fetched here on the host (its pip knows the network's trust
    # store), for CPython 3.11 on manylinux x86_64, checked against uv.lock's hashes.
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
      --require-hashes -r "$work/requirements.txt" -d "$work/wheel" || die "pip download failed"
    # Debian's python3.11 (the Dockerfile's python:3.11-slim-bookworm is the same
    # release line) installs them offline, then the project's wheel.
    nice -n 19 mmdebstrap --quiet --variant=minbase --mode=root \
      --include=python3.11,python3.11-venv,ca-certificates,libpython3.11 \
      --customize-hook="mkdir -p \"\$1/tmp/build\" && cp -r '$work/wheel' '$work/requirements.txt' \"\$1/tmp/build/\"" \
      --customize-hook='chroot "$1" python3.11 -m venv /app/.venv' \
      --customize-hook='chroot "$1" env -u PIP_FIND_LINKS /app/.venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --no-index --find-links /tmp/build/wheel --only-binary=:all: --require-hashes -r /tmp/build/requirements.txt' \
      --customize-hook='chroot "$1" sh -c "/app/.venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps /tmp/build/wheel/privacam-*.whl && { /app/.venv/bin/python -m compileall -q /app/.venv >/dev/null || true; }"' \
      --customize-hook='chroot "$1" sh -c "groupadd --system --gid 10001 privacam && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin privacam"' \
      --customize-hook='rm -rf "$1/tmp/build" "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*' \
      bookworm "$work/rootfs.tar" || die "mmdebstrap failed"
    python3 "$K8S_DIR/oci.py" --rootfs-tar "$work/rootfs.tar" --name "$name" --out "$out" \
      --cmd '["python","-c","raise SystemExit(\"privacam: run one of the privacam-<service> entry points\")"]' \
      --env PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 \
      --user 10001:10001 --workdir /app >/dev/null
    rm -rf "$work"
    trap - EXIT
    # Keep only this archive (the key changes with every commit touching the sources).
    find "$IMG_CACHE" -maxdepth 1 -name 'privacam-*.tar' ! -name "privacam-$key.tar" -delete
  fi
  import "$name" "$out"
}

UV="$CACHE_DIR/tools/uv-$(sed -n 's/^UV_VERSION := //p' "$REPO_DIR/Makefile")/bin/uv"
for what in "${@:-pause privacam}"; do
  for w in $what; do
    case $w in
      pause) pause_image ;;
      privacam) privacam_image ;;
      *) die "unknown image '$w' (pause, privacam)" ;;
    esac
  done
done
