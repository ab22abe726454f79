"""A store's restart costs no call: Redis, MinIO and Kafka, each stopped and started again
by the stack's own scripts while new users enroll and a camera uploads through the SDK.

The services' pools drop the connections a restart broke (Redis health checks and a retry
on a fresh connection, the S3 client's reconnects), and the SDK retries UNAVAILABLE with
back-off (whole uploads included), so no caller sees an error. Kafka here is one broker, so
its restart is a whole outage of the event bus: a registration that cannot publish is undone
and fails UNAVAILABLE, and Enrollment's retries wait it out within their deadline.

It runs late (see conftest.py) because it restarts the shared stack.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from privacam_sdk.enrollment import Enrollment
from tests.harness import ROOT, Platform
from tests.integration.test_clip_ingest import _home
from tests.integration.test_replicas import upload_many

pytestmark = pytest.mark.restarts_stack  # see conftest.py

STORES = ("redis", "minio", "kafka")


def _restart(store: str) -> float:
    """Stop the stack's `store` and start it again, as an operator would; seconds taken
    until it is healthy again."""
    began = time.monotonic()
    for script in ("down.sh", "up.sh"):
        subprocess.run(
            ["bash", str(ROOT / "stack" / script), store], check=True, capture_output=True
        )
    return time.monotonic() - began


async def _enroll_many(
    enrollment: Enrollment, until: asyncio.Event
) -> tuple[int, list[BaseException]]:
    """New accounts one after another until `until` is set: how many, and the failures."""
    failures: list[BaseException] = []
    n = 0
    while not until.is_set():
        suffix = secrets.token_hex(4)
        try:
            await enrollment.register_account(
                f"restart-{suffix}", f"restart-{suffix}", "a long enough passphrase"
            )
        except Exception as error:
            failures.append(error)
        n += 1
    return n, failures


def _kinds(failures: list[BaseException]) -> Counter[str]:
    """How many failures of each kind (a gRPC status, or an exception class)."""
    return Counter(
        str(f.code()) if isinstance(f, grpc.aio.AioRpcError) else type(f).__name__ for f in failures
    )


@pytest.mark.timeout(900)
async def test_store_restart_costs_no_call(platform: Platform, profiles_home: Path) -> None:
    home = await _home(platform, profiles_home)
    enrollment = platform.enrollment(profiles_home)
    for store in STORES:
        stop = asyncio.Event()
        enrolling = asyncio.create_task(_enroll_many(enrollment, stop))
        uploading = asyncio.create_task(
            upload_many(home.camera, f"restart-{store}-{secrets.token_hex(3)}", 0, stop)
        )
        await asyncio.sleep(2)
        took = await asyncio.to_thread(_restart, store)
        await asyncio.sleep(5)  # calls made on the connections the restart broke
        stop.set()
        (enrolled, enroll_failures), (uploaded, upload_failures) = await asyncio.gather(
            enrolling, uploading
        )
        print(
            f"\n{store} restarted in {took:.1f} s: {enrolled} enrollments "
            f"({len(enroll_failures)} failed), {uploaded} uploads ({len(upload_failures)} failed)"
        )
        assert enroll_failures == [], f"{store}: {_kinds(enroll_failures)} {enroll_failures[:2]}"
        assert upload_failures == [], f"{store}: {_kinds(upload_failures)} {upload_failures[:2]}"
        assert enrolled > 0
        assert uploaded > 0
