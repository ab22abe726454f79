#!/usr/bin/env bash
# Generates Python stubs for every proto under protos/ into an output
# directory (default: gen/ at the repository root, git-ignored):
#   *_pb2.py / *_pb2_grpc.py   protobuf messages and gRPC stubs (grpcio-tools)
#   *_pb2.pyi / *_pb2_grpc.pyi type stubs for mypy (mypy-protobuf)
#
# Modules import as privacam.<area>.v1.<file>_pb2 from the output directory
# (implicit namespace packages: no __init__.py is written).
#
# Usage: scripts/gen_protos.sh [OUTPUT_DIR]
# Env:   PYTHON  interpreter that has grpcio-tools==1.85.1 and
#                mypy-protobuf==5.1.0 installed (default: python3)
#
# The output directory is wiped first so that a deleted or renamed proto
# leaves no stale module behind.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="${root}/protos"
out="${1:-${root}/gen}"
python="${PYTHON:-python3}"

die() { echo "gen_protos: $*" >&2; exit 1; }

command -v "${python}" >/dev/null 2>&1 || die "no interpreter '${python}' (set PYTHON)"
"${python}" - 2>/dev/null <<'PY' || die "interpreter '${python}' lacks grpcio-tools or mypy-protobuf (pip install grpcio-tools==1.85.1 mypy-protobuf==5.1.0)"
import grpc_tools.protoc, mypy_protobuf.main  # noqa: F401
PY

# The directory is wiped: refuse anything that is not plainly a build output
# (the repository itself or one of its parents, protos/, the home directory).
[ -n "${out}" ] || die "empty output directory"
out="$(realpath -m -- "${out}")"
case "${root}/" in
  "${out%/}/"*) die "refusing to wipe '${out}': it contains the repository" ;;
esac
case "${out}/" in
  "${proto_dir}/"* | "${HOME:-/nonexistent}/") die "refusing to wipe '${out}'" ;;
esac

# protoc finds plugins on PATH by name; wrap mypy-protobuf's entry points so
# they run with ${python} whatever PATH holds.
plugins="$(mktemp -d)"
trap 'rm -rf "${plugins}"' EXIT
python_abs="$(command -v "${python}")"
printf '#!/bin/sh\nexec "%s" -c "import sys; from mypy_protobuf.main import main; sys.exit(main())"\n' \
  "${python_abs}" >"${plugins}/protoc-gen-mypy"
printf '#!/bin/sh\nexec "%s" -c "import sys; from mypy_protobuf.main import grpc; sys.exit(grpc())"\n' \
  "${python_abs}" >"${plugins}/protoc-gen-mypy_grpc"
chmod +x "${plugins}/protoc-gen-mypy" "${plugins}/protoc-gen-mypy_grpc"

mapfile -t protos < <(cd "${proto_dir}" && find privacam -name '*.proto' | LC_ALL=C sort)
[ "${#protos[@]}" -gt 0 ] || die "no .proto files under ${proto_dir}"

rm -rf "${out}"
mkdir -p "${out}"

# grpc_tools.protoc adds its bundled well-known types (google/protobuf/*)
# to the include path itself.
(
  cd "${proto_dir}"
  "${python}" -m grpc_tools.protoc \
    --proto_path=. \
    --plugin=protoc-gen-mypy="${plugins}/protoc-gen-mypy" \
    --plugin=protoc-gen-mypy_grpc="${plugins}/protoc-gen-mypy_grpc" \
    --python_out="${out}" \
    --grpc_python_out="${out}" \
    --mypy_out=quiet:"${out}" \
    --mypy_grpc_out=quiet:"${out}" \
    --fatal_warnings \
    "${protos[@]}"
)

echo "gen_protos: ${#protos[@]} protos -> ${out}"
