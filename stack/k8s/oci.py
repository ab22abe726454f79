"""Write an OCI image archive that `ctr images import` accepts, from a root filesystem.

Used by stack/k8s/images.sh: no registry and no docker daemon are reachable here,
so images are a Debian root filesystem (mmdebstrap) or a static binary, packed as
one layer with its config. Standard library only.

    python3 oci.py --rootfs DIR|--rootfs-tar FILE --name REF --out FILE.tar
        [--entrypoint JSON] [--cmd JSON] [--env K=V ...] [--user U] [--workdir D]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path


def _layer_from_dir(rootfs: Path, out: Path) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.mtime = 0
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _digest_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest(), path.stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--rootfs", type=Path)
    src.add_argument("--rootfs-tar", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--entrypoint", default="null")
    p.add_argument("--cmd", default="null")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="/")
    a = p.parse_args()

    with tempfile.TemporaryDirectory(dir=a.out.parent) as tmpd:
        tmp = Path(tmpd)
        blobs = tmp / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        raw = tmp / "layer.tar"
        if a.rootfs is not None:
            _layer_from_dir(a.rootfs, raw)
        else:
            shutil.copyfile(a.rootfs_tar, raw)
        diff_id, _ = _digest_file(raw)
        gz = tmp / "layer.tar.gz"
        with (
            raw.open("rb") as fin,
            gz.open("wb") as fout,
            gzip.GzipFile(fileobj=fout, mode="wb", compresslevel=1, mtime=0) as z,
        ):
            shutil.copyfileobj(fin, z, 1 << 20)
        raw.unlink()
        layer_digest, layer_size = _digest_file(gz)
        gz.rename(blobs / layer_digest)

        def blob(obj: Mapping[str, object]) -> tuple[str, int]:
            data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
            d = hashlib.sha256(data).hexdigest()
            (blobs / d).write_bytes(data)
            return d, len(data)

        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": json.loads(a.entrypoint),
                "Cmd": json.loads(a.cmd),
                "Env": a.env,
                "User": a.user,
                "WorkingDir": a.workdir,
            },
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        }
        cfg_d, cfg_n = blob(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{cfg_d}",
                "size": cfg_n,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{layer_digest}",
                    "size": layer_size,
                }
            ],
        }
        man_d, man_n = blob(manifest)
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{man_d}",
                    "size": man_n,
                    "annotations": {
                        "io.containerd.image.name": a.name,
                        "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        (tmp / "index.json").write_text(json.dumps(index))
        (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        part = a.out.with_suffix(".partial")
        with tarfile.open(part, "w") as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(tmp / name, arcname=name)
        part.rename(a.out)
    print(f"sha256:{man_d}")


if __name__ == "__main__":
    main()
