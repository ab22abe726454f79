"""The demo's live-view step (scripts/demo_live_view.py) run as `make up` runs it, in its own
process against the session platform: its output holds no asyncio complaint about a task
or a stream left pending (every cancelled stream is closed in order)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam_sdk import PrivacamClient
from tests.harness import Platform

ROOT = Path(__file__).resolve().parents[2]
ASYNCIO_COMPLAINTS = (
    "Task was destroyed but it is pending",
    "Task exception was never retrieved",
    "asynchronous generator is already running",
    "an error occurred during closing of asynchronous generator",
    "Exception ignored",
)


@pytest.mark.xfail(
    strict=False,
    reason="open defect (#25): under a full make test run's load the live-view demo once "
    "hung past 240 s (alone it passes in 48 s); quarantined until the hang is found",
)
async def test_demo_live_view_output_is_clean(platform: Platform, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "pki").mkdir(parents=True)
    shutil.copy(platform.pki.ca_file, run_dir / "pki" / "ca.crt")
    enrollment = platform.enrollment(run_dir / "home")
    login = f"demo-{secrets.token_hex(3)}"
    owner, _ = await enrollment.register_account("owner", login, "a long enough passphrase")
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(id_pb.CreateClaimTokenRequest())
        _, device = await enrollment.enroll_camera(
            "front-door", token.claim_token, f"SN-{login}", [owner.cert_file.read_bytes()]
        )
        await app.device_auth().SetPin(id_pb.SetPinRequest(device_id=device, pin="4071"))

    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(ROOT / "scripts" / "demo_live_view.py")],
            env={**os.environ, "PRIVACAM_RUN_DIR": str(run_dir), "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    except subprocess.TimeoutExpired as hung:
        # Where it hung: the last step the demo printed.
        partial = (hung.stdout or b"").decode() if isinstance(hung.stdout, bytes) else hung.stdout
        pytest.fail(f"the demo hung past 240 s; its output so far:\n{partial}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "the household's apps: watching ended" in result.stdout
    complaints = [
        line for line in output.splitlines() if any(c in line for c in ASYNCIO_COMPLAINTS)
    ]
    assert complaints == [], output
