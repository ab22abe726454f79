"""Each service's MinIO policy (stack/minio_users.py) grants exactly the S3 actions its code
uses, on the buckets its settings name: derived from the MinIO client calls in the source."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]

# MinIO client method -> the S3 action MinIO authorizes it as.
ACTIONS = {
    "bucket_exists": "s3:ListBucket",  # HeadBucket
    "list_objects": "s3:ListBucket",
    "put_object": "s3:PutObject",
    "_create_multipart_upload": "s3:PutObject",
    "_upload_part": "s3:PutObject",
    "_complete_multipart_upload": "s3:PutObject",
    "_abort_multipart_upload": "s3:AbortMultipartUpload",
    "_list_parts": "s3:ListMultipartUploadParts",
    "_list_multipart_uploads": "s3:ListBucketMultipartUploads",
    "get_object": "s3:GetObject",
    "stat_object": "s3:GetObject",
    "presigned_get_object": "s3:GetObject",
    "remove_object": "s3:DeleteObject",
    "remove_objects": "s3:DeleteObject",
    "set_bucket_lifecycle": "s3:PutLifecycleConfiguration",
    "get_bucket_lifecycle": "s3:GetLifecycleConfiguration",
}


def _minio_users() -> ModuleType:
    spec = importlib.util.spec_from_file_location("minio_users", ROOT / "stack" / "minio_users.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["minio_users"] = module
    spec.loader.exec_module(module)
    return module


MINIO_USERS = _minio_users()


def used_actions(service: str) -> set[str]:
    """S3 actions of every MinIO client method named in the service's source, plus the
    HeadBucket every service's ObjectStore makes at start."""
    found = {"s3:ListBucket"}
    for path in (ROOT / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ACTIONS:
                found.add(ACTIONS[node.attr])
    return found


def bucket_settings(service: str) -> set[str]:
    """Default bucket names of the service's settings (fields named *bucket)."""
    settings = importlib.import_module(f"services.{service}.settings")
    names = set()
    for cls in vars(settings).values():
        if isinstance(cls, type) and cls.__module__ == settings.__name__:
            for name, field in getattr(cls, "model_fields", {}).items():
                if name.endswith("bucket"):
                    names.add(field.default)
    return names


@pytest.mark.parametrize("service", sorted(MINIO_USERS.GRANTS))
def test_policy_grants_exactly_the_actions_the_code_uses(service: str) -> None:
    granted = {action for actions in MINIO_USERS.GRANTS[service].values() for action in actions}
    assert granted == used_actions(service)


@pytest.mark.parametrize("service", sorted(MINIO_USERS.GRANTS))
def test_policy_names_only_the_buckets_the_service_uses(service: str) -> None:
    assert set(MINIO_USERS.GRANTS[service]) == bucket_settings(service)


def test_services_without_a_policy_make_no_minio_calls() -> None:
    for folder in sorted((ROOT / "services").iterdir()):
        if folder.name in MINIO_USERS.GRANTS or folder.name == "common":
            continue
        if (folder / "__init__.py").exists():
            assert used_actions(folder.name) == {"s3:ListBucket"}, folder.name
            assert not bucket_settings(folder.name), folder.name


def test_a_policy_has_no_wildcards() -> None:
    for service in MINIO_USERS.GRANTS:
        document = MINIO_USERS.policy(service)
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert all("*" not in action for action in statement["Action"])
            assert all(r.startswith("arn:aws:s3:::privacam-") for r in statement["Resource"])
