"""Receipts are single-use for real: on the real access log, Kafka and two key_manager
replicas sharing one Kafka namespace, a receipt that released a key is refused everywhere
afterwards (same replica, the other replica, after a restart), and an old logged access is
refused even under a head the log has just signed for it.

Runs its own small platform (access_log and two key_manager replicas in a namespace of
their own) with a receipt maximum age of 30 s, so that "old" takes half a minute.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as log_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.keys.v1 import key_manager_service_pb2 as pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as pb_grpc
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from tests.harness import (
    ServiceProcess,
    cleanup_namespace,
    make_service,
    metric,
    mtls_channel,
    new_namespace,
    running,
)
from tests.pki_helpers import PkiFactory

MAX_AGE_SECONDS = 30
REFUSED = "privacam_key_manager_receipts_refused_total"


@dataclass
class ReceiptPlatform:
    pki: PkiFactory
    access_log: ServiceProcess
    replicas: tuple[ServiceProcess, ServiceProcess]


@pytest.fixture(scope="module")
def receipt_platform(
    stack_env: dict[str, str], pki: PkiFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReceiptPlatform]:
    namespace = new_namespace(stack_env, "receipts")
    access_log = make_service(
        "access_log", pki, stack_env, namespace, tmp_path_factory.mktemp("log")
    )
    replicas = tuple(
        make_service("key_manager", pki, stack_env, namespace, tmp_path_factory.mktemp(f"km{n}"))
        for n in (1, 2)
    )
    for replica in replicas:
        replica.env["PRIVACAM_KEY_MANAGER_RECEIPT_MAX_AGE_SECONDS"] = str(MAX_AGE_SECONDS)
    try:
        with running(access_log, *replicas):
            yield ReceiptPlatform(pki, access_log, (replicas[0], replicas[1]))
    finally:
        cleanup_namespace(stack_env, namespace)


def access(tenant: str, context: keys_pb2.KeyContext) -> log_pb2.AccessRecord:
    """A playback of the context's clip, as clip_ingest logs it."""
    return log_pb2.AccessRecord(
        access_id=str(uuid.uuid4()),
        tenant_id=tenant,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id="phone-1"
        ),
        resource=log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_CLIP, device_id=context.device_id, clip_id=context.clip_id
        ),
        purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        service="clip_ingest",
        occurred_at=to_timestamp(datetime.now(UTC)),
    )


async def refused(call: Any, plaintext_key: bytes) -> str:
    """The details of a PERMISSION_DENIED refusal; fails if a response (a key) comes back."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED, raised.value.details()
    details = raised.value.details() or ""
    assert details.startswith("receipt refused: "), details
    assert plaintext_key.hex() not in details
    return details


async def test_receipt_replay_refused(receipt_platform: ReceiptPlatform) -> None:
    platform = receipt_platform
    first, second = platform.replicas
    ingest = platform.pki.service("clip_ingest")
    tenant = str(uuid.uuid4())
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id="cam-1", clip_id="clip-1")
    async with (
        mtls_channel(platform.access_log.endpoint, ingest) as log_channel,
        mtls_channel(first.endpoint, ingest) as first_channel,
        mtls_channel(second.endpoint, ingest) as second_channel,
        mtls_channel(first.endpoint, platform.pki.service("retention")) as retention_channel,
        mtls_channel(platform.access_log.endpoint, platform.pki.service("retention")) as reader,
    ):
        log = log_grpc.AccessLogServiceStub(log_channel)
        # A service that may read a household's log (retention, for exports) re-proves any
        # old entry under the log's current head: what a replay would be built from.
        listing = log_grpc.AccessLogServiceStub(reader)
        keys = {
            "first": pb_grpc.KeyManagerServiceStub(first_channel),
            "second": pb_grpc.KeyManagerServiceStub(second_channel),
        }
        generated = await keys["first"].GenerateDataKey(
            pb.GenerateDataKeyRequest(context=context), timeout=15
        )
        secret = generated.plaintext_key

        def unwrap(replica: str, receipt: log_pb2.Receipt, stub: Any = None) -> Any:
            return (stub or keys[replica]).Unwrap(
                pb.UnwrapRequest(
                    wrapped_key=generated.wrapped_key,
                    context=context,
                    purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
                    receipt=receipt,
                ),
                timeout=15,
            )

        async def append(record: log_pb2.AccessRecord) -> log_pb2.Receipt:
            answer = await log.Append(log_pb.AppendRequest(record=record), timeout=15)
            return answer.receipt

        async def reproved(entry: log_pb2.Receipt) -> log_pb2.Receipt:
            """The entry's record under the current head, as a listing proves it."""
            listed = await listing.ListEntries(
                log_pb.ListEntriesRequest(tenant_id=tenant, page_size=500), timeout=15
            )
            (found,) = [e for e in listed.entries if e.index == entry.leaf_index]
            return log_pb2.Receipt(
                record=found.record,
                leaf_index=found.index,
                tree_head=listed.tree_head,
                inclusion_proof=found.inclusion_proof,
            )

        # An access logged now and left unused: "old" at the end of the test.
        old_access = await append(access(tenant, context))
        old_logged = time.monotonic()

        # A receipt releases the key once...
        used = await append(access(tenant, context))
        assert (await unwrap("first", used)).plaintext_key == secret
        # ...and not again on the same replica,
        details = await refused(unwrap("first", used), secret)
        assert "already used" in details
        # nor on the other replica (it knows only what the state topic told it),
        details = await refused(unwrap("second", used), secret)
        assert "already used" in details
        for replica in platform.replicas:
            assert metric(replica.metrics_port, REFUSED, reason="already_used") == 1

        # A receipt the clip_ingest logged, presented with another service's certificate.
        theirs = await append(access(tenant, context))
        details = await refused(
            unwrap("first", theirs, pb_grpc.KeyManagerServiceStub(retention_channel)), secret
        )
        assert "another service" in details

        # After a restart the replica knows the used receipt again from the state topic.
        assert first.stop() == 0
        first.start()
        first.wait_serving()
        # The used entry under a newer head: only its use stops it now.
        await append(access(tenant, context))
        fresh = await reproved(used)
        details = await refused(unwrap("first", fresh), secret)
        assert "already used" in details, f"refused for another reason: {details}"
        assert metric(first.metrics_port, REFUSED, reason="already_used") == 1
        # The restarted replica does release the key for a new access.
        assert (await unwrap("first", await append(access(tenant, context)))).plaintext_key == (
            secret
        )

        # An old logged access under a head signed just now (the old entry re-proved under
        # the head of a fresh append) proves an old access, not this one.
        wait = MAX_AGE_SECONDS + 1 - (time.monotonic() - old_logged)
        await asyncio.sleep(max(wait, 0))
        await append(access(tenant, context))
        stale = await reproved(old_access)
        head_age = datetime.now(UTC) - stale.tree_head.timestamp.ToDatetime(tzinfo=UTC)
        assert head_age.total_seconds() < 5  # the head itself is fresh
        for name in keys:
            details = await refused(unwrap(name, stale), secret)
            assert "the logged access happened" in details
        assert metric(second.metrics_port, REFUSED, reason="stale") == 1
