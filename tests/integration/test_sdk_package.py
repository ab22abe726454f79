"""The SDK as its own distribution: `pip install ./sdk` into a clean virtual environment,
then its `privacam` command verifies a household's access log against the running platform.

pip installs from PyPI for real, with a download cache under PRIVACAM_CACHE_DIR so a warm
run spends its time on the virtual environment, not the network."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import Platform

ROOT = Path(__file__).resolve().parents[2]
PIP_CACHE = Path(os.environ.get("PRIVACAM_CACHE_DIR", ROOT / ".cache")) / "pip"


def _clean_environment() -> dict[str, str]:
    """The test's environment without anything that would let the repository leak in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not key.startswith("PIP_")
    }
    env["PIP_CACHE_DIR"] = str(PIP_CACHE)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(command: list[str], cwd: Path, timeout: float, **extra: str) -> str:
    result = subprocess.run(
        command,
        env={**_clean_environment(), **extra},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(command[:3])}: {result.stderr[-2000:]}"
    return result.stdout


def test_sdk_installs_alone(platform: Platform, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(ROOT / "sdk")], tmp_path, 600)
    installed = time.monotonic() - started

    # Only the SDK, its core and the stubs: the services are not importable.
    probe = _run(
        [
            str(python),
            "-c",
            "import importlib.util as u; "
            "print([n for n in ('services', 'privacam_sdk', 'privacam_core', 'privacam',"
            " 'redis', 'aiokafka', 'minio') if u.find_spec(n)])",
        ],
        tmp_path,
        60,
    )
    assert probe.strip() == "['privacam_sdk', 'privacam_core', 'privacam']"
    cli = str(venv / "bin" / "privacam")
    assert _run([cli, "--version"], tmp_path, 60).strip() == "privacam 0.1.0"
    assert "_privacam_profiles" in _run([cli, "completion", "bash"], tmp_path, 60)

    home = tmp_path / "home"

    def privacam(*args: str, **env: str) -> str:
        return _run([cli, "--home", str(home), *args], tmp_path, 60, **env)

    endpoints = platform.endpoints()
    enroll = [
        "--ca",
        str(platform.pki.ca_file),
        "--enroll-endpoint",
        endpoints["device_auth_enrollment"],
        *(f"--endpoint={n}={a}" for n, a in endpoints.items() if n != "device_auth_enrollment"),
    ]
    login = f"sdk-{secrets.token_hex(3)}"
    privacam(
        *("--profile", "phone", "register", "--login", login),
        *enroll,
        PRIVACAM_PASSWORD="a long enough passphrase",
    )
    token = privacam("--profile", "phone", "claim-token").splitlines()[0]
    enrolled = privacam(
        *("--profile", "door", "enroll-camera", f"--token={token}", "--serial", f"SN-{login}"),
        *enroll,
    )
    device = enrolled.split("device ")[1].split(";")[0]
    # Listing the camera's clips is an access the household's log records.
    privacam("--profile", "phone", "clips", "list", device)

    # The log is written from the bus: wait for the entry, verified against a signed head.
    deadline = time.monotonic() + 60
    listing = privacam("--profile", "phone", "access-log", "list", "--camera", device)
    while "clip_list" not in listing and time.monotonic() < deadline:
        time.sleep(1)
        listing = privacam("--profile", "phone", "access-log", "list", "--camera", device)
    lines = listing.splitlines()
    assert any("clip_list" in line and "app " in line for line in lines), listing
    assert lines[-1].startswith("verified "), listing
    assert "none hidden" in lines[-1]
    print(f"pip install ./sdk into a clean venv: {installed:.1f} s")
