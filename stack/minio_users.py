"""MinIO users of Privacam: one per service, each with a policy for its own buckets and actions.

The root user exists for setup only (buckets, users, policies): no service is given its keys.
A service's user may touch only the buckets and S3 actions its code uses; anything else
MinIO answers `AccessDenied`. The table below is the data; `tests/unit/common/
test_least_privilege.py` checks it against the client calls each service makes.

    minio_users.py apply    --secrets DIR --endpoint HOST:PORT   # buckets, policies, users (root)
    minio_users.py policy   SERVICE                              # one policy's JSON, for operators
    minio_users.py env      --secrets DIR                        # stack.env lines of every user

Passwords are read from files in --secrets (never argv): the root's `minio_root_user` and
`minio_root_password` (made by stack/up.sh), and each service's
`minio_<service>_secret_key` (made here on first use). Run with the project's virtualenv
(it uses the `minio` package's admin client).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from secrets import token_hex
from typing import Any

CLIP_BUCKET = "privacam-clips"
EXPORT_BUCKET = "privacam-exports"
ACCESS_LOG_BUCKET = "privacam-access-log"
BUCKETS = (CLIP_BUCKET, EXPORT_BUCKET, ACCESS_LOG_BUCKET)

# HeadBucket (bucket_exists, checked at start) is authorized as s3:ListBucket; the parts
# of a multipart upload as s3:PutObject.

GRANTS: dict[str, dict[str, list[str]]] = {
    # service: bucket -> object and bucket actions
    # Writes clips (one PUT or a multipart upload, aborted if the camera stops), reads them
    # for playback, deletes on the owner's DeleteClip. S3 has no HeadBucket-only action, so
    # s3:ListBucket (object names: tenant and camera ids, never content) comes with it.
    "clip_ingest": {
        CLIP_BUCKET: [
            "s3:ListBucket",
            "s3:PutObject",
            "s3:GetObject",
            "s3:DeleteObject",
            "s3:AbortMultipartUpload",
        ],
    },
    # Deletes expired clips, lists a cancelled household's, reads clips into exports,
    # writes exports (a multipart upload, resumed or aborted after a crash: it lists the
    # bucket's unfinished uploads to find those no build owns), reads and discards them,
    # and keeps the lifecycle backstop on both buckets.
    "retention": {
        CLIP_BUCKET: [
            "s3:ListBucket",
            "s3:GetObject",
            "s3:DeleteObject",
            "s3:PutLifecycleConfiguration",
        ],
        EXPORT_BUCKET: [
            "s3:ListBucket",
            "s3:ListBucketMultipartUploads",
            "s3:PutObject",
            "s3:GetObject",
            "s3:DeleteObject",
            "s3:AbortMultipartUpload",
            "s3:PutLifecycleConfiguration",
        ],
    },
    # Writes the logs' immutable segments and checkpoints, reads them at start, deletes a
    # deleted household's.
    "access_log": {
        ACCESS_LOG_BUCKET: ["s3:ListBucket", "s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
    },
}

_BUCKET_ACTIONS = {
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:PutLifecycleConfiguration",
    "s3:GetLifecycleConfiguration",
}
"""Actions on a bucket's ARN; every other action is on its objects' (`<bucket>/*`)."""


def access_key(service: str) -> str:
    """A service's MinIO user name (its access key)."""
    return f"privacam-{service.replace('_', '-')}"


def policy_name(service: str) -> str:
    return f"privacam-{service.replace('_', '-')}"


def policy(service: str) -> dict[str, Any]:
    """The IAM policy of a service: bucket-level actions on the bucket ARN, object-level
    actions on its objects, nothing else."""
    statements = []
    for bucket, actions in GRANTS[service].items():
        on_bucket = sorted(a for a in actions if a in _BUCKET_ACTIONS)
        on_objects = sorted(a for a in actions if a not in _BUCKET_ACTIONS)
        if on_bucket:
            statements.append(
                {"Effect": "Allow", "Action": on_bucket, "Resource": [f"arn:aws:s3:::{bucket}"]}
            )
        if on_objects:
            statements.append(
                {"Effect": "Allow", "Action": on_objects, "Resource": [f"arn:aws:s3:::{bucket}/*"]}
            )
    return {"Version": "2012-10-17", "Statement": statements}


def secret_key(secrets: Path, service: str) -> str:
    """A service's secret key, made (random, mode 0600) on first use and stable after."""
    path = secrets / f"minio_{service}_secret_key"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(token_hex(24) + "\n")
    return _read(secrets, path.name)


def _read(secrets: Path, name: str) -> str:
    return (secrets / name).read_text().strip()


def apply(secrets: Path, endpoint: str) -> None:
    """Create the buckets, the policies and the users (idempotent: a re-run resets each
    user's secret and policy to what the table says)."""
    from minio import Minio, MinioAdmin
    from minio.credentials.providers import StaticProvider

    root = StaticProvider(_read(secrets, "minio_root_user"), _read(secrets, "minio_root_password"))
    client = Minio(endpoint, credentials=root, secure=False)
    admin = MinioAdmin(endpoint=endpoint, credentials=root, secure=False)
    for bucket in BUCKETS:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
    for service in GRANTS:
        name = policy_name(service)
        admin.policy_add(name, policy=policy(service))
        admin.user_add(access_key(service), secret_key(secrets, service))
        admin.policy_set(name, user=access_key(service))


def env_lines(secrets: Path) -> list[str]:
    lines = []
    for service in GRANTS:
        prefix = f"PRIVACAM_STACK_MINIO_{service.upper()}"
        lines.append(f"{prefix}_ACCESS_KEY={access_key(service)}")
        lines.append(f"{prefix}_SECRET_KEY={secret_key(secrets, service)}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    applying = commands.add_parser("apply")
    applying.add_argument("--secrets", type=Path, required=True)
    applying.add_argument("--endpoint", required=True)
    showing = commands.add_parser("policy")
    showing.add_argument("service", choices=sorted(GRANTS))
    listing = commands.add_parser("env")
    listing.add_argument("--secrets", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "apply":
        apply(args.secrets, args.endpoint)
    elif args.command == "policy":
        print(json.dumps(policy(args.service), indent=2))
    else:
        print("\n".join(env_lines(args.secrets)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
