"""A wrong or missing setting stops a service at start with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pki_helpers import PkiFactory


@pytest.mark.parametrize(
    "service",
    ["device_auth", "key_manager", "clip_ingest", "relay_broker", "retention", "access_log"],
)
def test_missing_settings_are_named(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVACAM_")}
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PRIVACAM_KAFKA_BOOTSTRAP_SERVERS: is required but not set" in result.stderr
    assert "PRIVACAM_TLS_CERT_FILE: is required but not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_setting_is_named(pki: PkiFactory) -> None:
    identity = pki.service("clip_ingest")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVACAM_")}
    env.update(
        {
            "PRIVACAM_TLS_CA_FILE": str(identity.ca_file),
            "PRIVACAM_TLS_CERT_FILE": str(identity.cert_file),
            "PRIVACAM_TLS_KEY_FILE": str(identity.key_file),
            "PRIVACAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
            "PRIVACAM_CLIP_INGEST_REDIS_URL": "redis://127.0.0.1:6379/0",
            "PRIVACAM_MINIO_ENDPOINT": "127.0.0.1:9000",
            "PRIVACAM_MINIO_ACCESS_KEY": "a",
            "PRIVACAM_MINIO_SECRET_KEY": "b",
            "PRIVACAM_CLIP_INGEST_GRPC_PORT": "not-a-port",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "services.clip_ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PRIVACAM_CLIP_INGEST_GRPC_PORT" in result.stderr
    assert "'not-a-port'" in result.stderr


def test_help_settings_lists_every_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.relay_broker", "--help-settings"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in (
        "PRIVACAM_RELAY_BROKER_GRPC_PORT (default 7004)",
        "PRIVACAM_TURN_SHARED_SECRET",
        "PRIVACAM_RELAY_BROKER_REDIS_URL",
        "PRIVACAM_KAFKA_BOOTSTRAP_SERVERS",
    ):
        assert name in result.stdout
