#!/usr/bin/env bash
# Generates C++ and Go stubs for every proto under protos/ (buf generate with
# buf.gen.yaml) into an output directory (default: stubs/ at the repository
# root, git-ignored), then compiles them, so a proto that breaks another
# language's generator or compiler fails here and not in a firmware team's build:
#   go/   protoc-gen-go + protoc-gen-go-grpc; a Go module (go.mod and go.sum from
#         scripts/stubs_go/, pinning grpc and protobuf); `go build ./...` and `go vet ./...`
#   cpp/  protoc's built-in C++ generator + grpc_cpp_plugin; every .pb.cc and
#         .grpc.pb.cc compiled with g++ -c against pkg-config protobuf grpc++, then linked
#         into one shared object with --no-undefined (every symbol resolves in the libraries)
#
# Installs what it needs, once:
#   Debian packages (as root, via sudo if needed): protoc and libprotobuf-dev come from one
#   source package, grpc_cpp_plugin and libgrpc++-dev from another, so the generated C++ always
#   matches the headers it compiles against (generated code refuses another protobuf version).
#   Go plugins: `go install` at the versions pinned below, into
#   ${PRIVACAM_CACHE_DIR:-<repo>/.cache}/tools/<name>-<version>/.
# C++ objects go through ccache (cache in ${PRIVACAM_CACHE_DIR}/ccache) and Go through its
# build cache: a warm run takes seconds, a cold one about two minutes on 2 cores.
#
# Usage: scripts/gen_stubs.sh [OUTPUT_DIR]
# Env:   BUF  the buf binary (default: buf on PATH; the Makefile passes its pinned one)
set -euo pipefail

# --- pinned --------------------------------------------------------------------------------
# Newest served by the Go module proxy on 2026-12-07.
PROTOC_GEN_GO_VERSION=v1.36.12     # google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2  # google.golang.org/grpc/cmd/protoc-gen-go-grpc
# The Go stubs compile against the modules in scripts/stubs_go/go.mod (grpc v1.85.0,
# protobuf v1.36.12; go.sum verifies them).
# Debian 12 packages (not pinned with pkg=ver: security updates replace revisions on the
# mirror); a different installed version only warns.
DEBIAN_PACKAGES=(protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev g++ pkg-config ccache)
PROTOBUF_DEB_VERSION=3.21.12-3+deb12u1
GRPC_DEB_VERSION=1.51.1-3+b1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${root}/stubs}"
buf="${BUF:-buf}"
cache="${PRIVACAM_CACHE_DIR:-${root}/.cache}"
tools="${cache}/tools"

# as_root (and the stack's paths); log and die are this script's own, defined after it.
# shellcheck source=stack/lib.sh
source "${root}/stack/lib.sh"
log() { echo "gen_stubs: $*" >&2; }
die() { echo "gen_stubs: ERROR: $*" >&2; exit 1; }

command -v "${buf}" >/dev/null 2>&1 || die "no buf '${buf}' (run through \`make stubs\`, or set BUF)"
command -v go >/dev/null 2>&1 || die "Go is needed: install Go 1.26.7+ (the platform's stated minimum) and retry"

# buf cleans go/ and cpp/ under the output directory; refuse anything that is not plainly a
# build output.
[ -n "${out}" ] || die "empty output directory"
out="$(realpath -m -- "${out}")"
case "${root}/" in "${out%/}/"*) die "refusing to write into '${out}': it contains the repository" ;; esac
case "${out}/" in "${root}/protos/"* | "${HOME:-/nonexistent}/") die "refusing to write into '${out}'" ;; esac

# --- install -------------------------------------------------------------------------------
install_debian_packages() {
  local missing=() p have
  for p in "${DEBIAN_PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null)" = "install ok installed" ] || missing+=("${p}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
    # Package lists are refreshed only when missing or when the install fails.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null ||
      ! as_root "${apt[@]}" "${missing[@]}"; then
      log "apt: refreshing package lists and retrying"
      as_root apt-get update -q
      as_root "${apt[@]}" "${missing[@]}"
    fi
  fi
  for p in libprotobuf-dev:${PROTOBUF_DEB_VERSION} libgrpc++-dev:${GRPC_DEB_VERSION}; do
    have="$(dpkg-query -W -f='${Version}' "${p%%:*}")"
    [ "${have}" = "${p#*:}" ] ||
      log "WARNING: ${p%%:*} is ${have}, gen_stubs.sh expects ${p#*:} (update it if this is a Debian security update)"
  done
}

go_install() { # name version package
  local name="$1" version="$2" package="$3" dir="${tools}/$1-$2"
  [ -x "${dir}/${name}" ] && return 0
  log "installing ${name} ${version} (go install, once)"
  rm -rf "${dir}.partial" && mkdir -p "${dir}.partial"
  if ! GOBIN="${dir}.partial" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath "${package}@${version}" >"${dir}.partial/install.log" 2>&1; then
    tail -n 30 "${dir}.partial/install.log" >&2
    die "go install ${package}@${version} failed"
  fi
  rm -rf "${dir}" && mv "${dir}.partial" "${dir}"
}

mkdir -p "${tools}"
# One install at a time per cache dir (the same lock as stack/install.sh).
exec 8>"${cache}/.install.lock"
flock 8
install_debian_packages
go_install protoc-gen-go "${PROTOC_GEN_GO_VERSION}" google.golang.org/protobuf/cmd/protoc-gen-go
go_install protoc-gen-go-grpc "${PROTOC_GEN_GO_GRPC_VERSION}" google.golang.org/grpc/cmd/protoc-gen-go-grpc
flock -u 8

# --- generate ------------------------------------------------------------------------------
# buf.gen.yaml names the plugins by name: these come first on PATH (protoc and
# grpc_cpp_plugin are Debian's, in /usr/bin).
export PATH="${tools}/protoc-gen-go-${PROTOC_GEN_GO_VERSION}:${tools}/protoc-gen-go-grpc-${PROTOC_GEN_GO_GRPC_VERSION}:${PATH}"
mkdir -p "${out}"
(cd "${root}" && "${buf}" generate --template buf.gen.yaml --output "${out}")
cp "${root}/scripts/stubs_go/go.mod" "${root}/scripts/stubs_go/go.sum" "${out}/go/"

# --- compile: Go ---------------------------------------------------------------------------
(
  cd "${out}/go"
  go build ./...
  go vet ./...
)
log "go: $(find "${out}/go" -name '*.go' | wc -l) files build and vet"

# --- compile: C++ --------------------------------------------------------------------------
export CCACHE_DIR="${cache}/ccache" CCACHE_BASEDIR="${out}"
mapfile -t sources < <(cd "${out}/cpp" && find privacam -name '*.cc' | LC_ALL=C sort)
[ "${#sources[@]}" -gt 0 ] || die "buf generated no C++ sources"
read -r -a cflags <<<"$(pkg-config --cflags protobuf grpc++)"
read -r -a libs <<<"$(pkg-config --libs protobuf grpc++)"
rm -rf "${out}/obj" && mkdir -p "${out}/obj"
(
  cd "${out}/cpp"
  printf '%s\n' "${sources[@]}" |
    xargs -P "$(nproc)" -I{} sh -c 'o="$1/$2" f="$2"; shift 2; mkdir -p "${o%/*}" && ccache g++ "$@" -c "$f" -o "$o.o"' \
      sh "${out}/obj" {} -std=c++17 -fPIC -O0 -Wall -Werror -I. "${cflags[@]}"
)
mapfile -t objects < <(find "${out}/obj" -name '*.o' | LC_ALL=C sort)
[ "${#objects[@]}" -eq "${#sources[@]}" ] || die "compiled ${#objects[@]} of ${#sources[@]} C++ sources"
g++ -shared -Wl,--no-undefined -o "${out}/obj/libprivacam_stubs.so" "${objects[@]}" "${libs[@]}"
log "c++: ${#sources[@]} sources compile and link (protobuf $(pkg-config --modversion protobuf), grpc++ $(pkg-config --modversion grpc++))"
