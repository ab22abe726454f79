"""The `privacam` command line, as a developer would use it against a running platform."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.harness import Platform


def run_privacam(
    home: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privacam_sdk.cli", "--home", str(home), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def privacam(home: Path, *args: str, **env: str) -> str:
    result = run_privacam(home, *args, timeout=60, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def enroll_args(platform: Platform) -> list[str]:
    """The CA and the endpoints `register` and `enroll-camera` need."""
    endpoints = platform.endpoints()
    return [
        "--ca",
        str(platform.pki.ca_file),
        "--enroll-endpoint",
        endpoints["device_auth_enrollment"],
        *(
            f"--endpoint={name}={address}"
            for name, address in endpoints.items()
            if name != "device_auth_enrollment"
        ),
    ]


def test_register_pair_and_configure_a_camera_from_the_cli(
    platform: Platform, tmp_path: Path
) -> None:
    enroll = enroll_args(platform)
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


def test_cli_covers_rights(platform: Platform, tmp_path: Path) -> None:
    """Every right through the CLI: export (progress, download, verification), consent,
    correction, unshare, camera revoke, certificate renewal and cancellation; listings as
    JSON (the access log and privacy status included); the PIN never an argument."""
    enroll = enroll_args(platform)
    password = "a long enough passphrase"
    owner, friend = f"rights-{secrets.token_hex(3)}", f"friend-{secrets.token_hex(3)}"
    for profile, login in (("phone", owner), ("friend", friend)):
        privacam(
            tmp_path,
            *("--profile", profile, "register", "--login", login),
            *enroll,
            PRIVACAM_PASSWORD=password,
        )
    token = privacam(tmp_path, "--profile", "phone", "claim-token").splitlines()[0]
    out = privacam(
        tmp_path,
        *("--profile", "doorbell", "enroll-camera", f"--token={token}", "--serial", "SN-RIGHTS"),
        *enroll,
    )
    device = out.split("device ")[1].split(";")[0]
    phone = ("--profile", "phone")

    assert privacam(tmp_path, "--version").strip().startswith("privacam ")
    refused = run_privacam(tmp_path, *phone, "clips", "download", device, "c", "-o", "x", "--pin=1")
    assert refused.returncode == 2
    assert "PRIVACAM_PIN" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert {"phone", "friend", "doorbell"} <= set(
        json.loads(privacam(tmp_path, "profile", "list", "--json"))
    )
    cameras = json.loads(privacam(tmp_path, *phone, "cameras", "--json"))
    assert [c["device_id"] for c in cameras] == [device]
    assert json.loads(privacam(tmp_path, *phone, "clips", "list", device, "--json")) == []

    # Sharing, then unsharing.
    privacam(tmp_path, *phone, "share", device, "--with", friend)
    given = json.loads(privacam(tmp_path, *phone, "grants", "--json"))
    assert [(g["direction"], g["device_id"]) for g in given] == [("given", device)]
    received = json.loads(privacam(tmp_path, "--profile", "friend", "grants", "--json"))
    assert [g["grant_id"] for g in received] == [given[0]["grant_id"]]
    assert "ended" in privacam(tmp_path, *phone, "unshare", given[0]["grant_id"])
    assert json.loads(privacam(tmp_path, *phone, "grants", "--json")) == []
    friend_cameras = json.loads(privacam(tmp_path, "--profile", "friend", "cameras", "--json"))
    assert friend_cameras == []

    # Correction of the account's data.
    corrected = f"{owner}-fixed"
    privacam(tmp_path, *phone, "account", "correct", "--login", corrected)
    assert json.loads(privacam(tmp_path, *phone, "account", "show", "--json"))["login"] == corrected

    # Withdrawal of consent: alerts off, clips deleted.
    assert "consent withdrawn" in privacam(
        tmp_path, *phone, "consent", "withdraw", device, "--clips", "delete"
    )
    settings = json.loads(privacam(tmp_path, *phone, "cameras", "--json"))[0]["settings"]
    assert not settings.get("activity_alerts_enabled", False)

    # Renewal: a new certificate in the profile, and it works.
    before = (tmp_path / "profiles" / "phone" / "tls.crt").read_bytes()
    assert "certificate renewed" in privacam(tmp_path, *phone, "certificate", "renew")
    assert (tmp_path / "profiles" / "phone" / "tls.crt").read_bytes() != before
    privacam(tmp_path, *phone, "account", "show")

    # Export: progress on stderr while it builds and downloads, then verified.
    archive = tmp_path / "export.zip"
    exported = run_privacam(tmp_path, *phone, "export", "-o", str(archive), "--json")
    assert exported.returncode == 0, exported.stderr
    result = json.loads(exported.stdout)
    assert result["verified"] is True
    assert "export.json" in result["files"]
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == result["sha256"]
    assert "ready" in exported.stderr
    assert "downloading:" in exported.stderr
    with zipfile.ZipFile(archive) as opened:
        assert json.loads(opened.read("export.json"))["account"]["login"] == corrected
    listed = json.loads(privacam(tmp_path, *phone, "export", "list", "--json"))
    assert result["export"]["export_id"] in [e["export_id"] for e in listed]

    # The household's log and the camera's privacy mode, as JSON.
    log = json.loads(privacam(tmp_path, *phone, "access-log", "list", "--json"))
    assert log["verified"] is True
    assert log["head"]["tree_size"] >= len(log["entries"]) > 0
    assert all(e["record"]["tenant_id"] == log["head"]["tenant_id"] for e in log["entries"])
    privacy = json.loads(privacam(tmp_path, *phone, "privacy", device, "status", "--json"))
    assert (privacy["device_id"], privacy["private"]) == (device, False)

    # Revoking the camera: gone from the listing.
    assert "revoked" in privacam(tmp_path, *phone, "camera", "revoke", device)
    assert json.loads(privacam(tmp_path, *phone, "cameras", "--json")) == []

    # Cancellation: a wrong password is one line; the right one gives the record, saved.
    wrong = run_privacam(
        tmp_path, *phone, "account", "cancel", PRIVACAM_PASSWORD="not the password at all"
    )
    assert wrong.returncode == 1
    assert len(wrong.stderr.strip().splitlines()) == 1
    saved = tmp_path / "cancellation.json"
    record = json.loads(
        privacam(
            tmp_path,
            *phone,
            *("account", "cancel", "--record", str(saved), "--json"),
            PRIVACAM_PASSWORD=password,
        )
    )
    assert json.loads(saved.read_text()) == record
    assert int(record["app_installs_removed"]) == 1
    assert record["completed_at"]
    gone = run_privacam(tmp_path, *phone, "account", "show")
    assert gone.returncode != 0
    assert len(gone.stderr.strip().splitlines()) == 1
