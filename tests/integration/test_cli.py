"""The `privacam` command line, as a developer would use it against a running platform."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.harness import Platform


def privacam(home: Path, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "privacam_sdk.cli", "--home", str(home), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_register_pair_and_configure_a_camera_from_the_cli(
    platform: Platform, tmp_path: Path
) -> None:
    endpoints = [
        f"--endpoint={name}={address}"
        for name, address in platform.endpoints().items()
        if name != "device_auth_enrollment"
    ]
    enroll = [
        "--ca",
        str(platform.pki.ca_file),
        "--enroll-endpoint",
        platform.endpoints()["device_auth_enrollment"],
        *endpoints,
    ]
    login = f"cli-{secrets.token_hex(3)}"
    out = privacam(
        tmp_path,
        "--profile",
        "phone",
        "register",
        "--login",
        login,
        *enroll,
        PRIVACAM_PASSWORD="a long enough passphrase",
    )
    assert "account created" in out
    token = privacam(tmp_path, "--profile", "phone", "claim-token").splitlines()[0]
    out = privacam(
        tmp_path,
        "--profile",
        "doorbell",
        "enroll-camera",
        "--token",
        token,
        "--serial",
        "SN-CLI-1",
        *enroll,
    )
    device = out.split("device ")[1].split(";")[0]
    privacam(tmp_path, "--profile", "phone", "settings", device, "--alerts", "on")
    listing = privacam(tmp_path, "--profile", "phone", "cameras")
    assert device in listing
    assert "alerts=on" in listing
    assert (tmp_path / "profiles" / "doorbell" / "tls.key").stat().st_mode & 0o077 == 0
