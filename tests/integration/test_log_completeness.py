"""A household's log reader proves that nothing is missing from a listing (all, by camera,
by time), trusts only the log keys its profile pins, and tells a deleted log from a
truncated one. The real access_log service, with a test double in front of it where the
log has to misbehave."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as pb_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import events_pb2 as identity_events
from privacam.types.v1 import types_pb2
from privacam_core.merkle import EMPTY_ROOT
from privacam_core.receipts import sign_key_rotation, sign_log_deletion, sign_tree_head
from privacam_core.timestamps import to_timestamp
from privacam_sdk import PrivacamClient
from privacam_sdk.access_log import (
    AccessLogReader,
    EntryMissing,
    LogDeleted,
    LogTampered,
    ReceiptError,
)
from privacam_sdk.profile import Profile
from services.common import topics
from services.common.kafka import EventProducer
from tests.harness import ROOT, Platform, access_log_key, free_port, kafka_settings

KEY_ID = "test-log-1"
Response = pb.ListEntriesResponse


def pin_log_keys(profile: Profile, platform: Platform) -> None:
    """What enrollment delivers: the log's key, pinned in the profile (log-keys.json)."""
    pem = (
        access_log_key(platform.pki)
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    (profile.directory / "log-keys.json").write_text(json.dumps({KEY_ID: pem.decode()}))


class Proxy(pb_grpc.AccessLogServiceServicer):
    """A log that misbehaves: forwards to the real access_log with the caller's own
    credentials, and lets a test rewrite the answers to ListEntries and ListSigningKeys."""

    def __init__(self, upstream: pb_grpc.AccessLogServiceStub) -> None:
        self.upstream: Any = upstream
        self.entries: Callable[[Response], None] = lambda response: None
        self.keys: Callable[[pb.ListSigningKeysResponse], None] = lambda response: None

    async def ListEntries(self, request: pb.ListEntriesRequest, context: Any) -> Response:
        response: Response = await self.upstream.ListEntries(request)
        self.entries(response)
        return response

    async def ListSigningKeys(
        self, request: pb.ListSigningKeysRequest, context: Any
    ) -> pb.ListSigningKeysResponse:
        response: pb.ListSigningKeysResponse = await self.upstream.ListSigningKeys(request)
        self.keys(response)
        return response

    async def GetTreeHead(self, request: Any, context: Any) -> Any:
        return await self.upstream.GetTreeHead(request)

    async def GetConsistencyProof(self, request: Any, context: Any) -> Any:
        return await self.upstream.GetConsistencyProof(request)


class Household:
    """A tenant with an app profile that reaches the log directly and one that reaches it
    through the proxy."""

    def __init__(self, platform: Platform, home: Path) -> None:
        self.platform = platform
        self.home = home
        self.tenant = str(uuid.uuid4())
        self.proxy_port = free_port()
        self._clients: list[PrivacamClient] = []
        self._server: grpc.aio.Server | None = None
        self.proxy: Proxy | None = None

    def profile(self, through_proxy: bool) -> Profile:
        name = f"app-{uuid.uuid4().hex[:8]}"
        identity = self.platform.pki.app(self.tenant, name)
        endpoints = self.platform.endpoints()
        if through_proxy:
            endpoints["access_log"] = f"127.0.0.1:{self.proxy_port}"
        profile = Profile.import_files(
            name,
            identity.ca_file,
            identity.cert_file,
            identity.key_file,
            endpoints,
            self.platform.pki.trust_domain,
            self.home,
        )
        pin_log_keys(profile, self.platform)
        return profile

    def reader(self, through_proxy: bool = False) -> AccessLogReader:
        client = PrivacamClient(self.profile(through_proxy), timeout=15)
        self._clients.append(client)
        return AccessLogReader(client)

    def upstream(self) -> Any:
        """A stub straight to the real log, as this household's app."""
        client = PrivacamClient(self.profile(False), timeout=15)
        self._clients.append(client)
        return pb_grpc.AccessLogServiceStub(client.channel("access_log"))

    async def start_proxy(self) -> Proxy:
        upstream_client = PrivacamClient(self.profile(False), timeout=15)
        self._clients.append(upstream_client)
        stub = pb_grpc.AccessLogServiceStub(upstream_client.channel("access_log"))
        self.proxy = Proxy(stub)  # type: ignore[abstract]  # the RPCs it needs only
        server = grpc.aio.server()
        pb_grpc.add_AccessLogServiceServicer_to_server(self.proxy, server)
        ca, cert, key = self.platform.pki.service("access_log").credentials()
        server.add_secure_port(
            f"127.0.0.1:{self.proxy_port}",
            grpc.ssl_server_credentials([(key, cert)], root_certificates=ca),
        )
        await server.start()
        self._server = server
        return self.proxy

    async def append(self, device: str, occurred_at: datetime) -> None:
        client = PrivacamClient(
            self.platform.profile(
                f"svc-{uuid.uuid4().hex[:6]}", self.platform.pki.service("clip_ingest"), self.home
            ),
            timeout=15,
        )
        self._clients.append(client)
        stub = pb_grpc.AccessLogServiceStub(client.channel("access_log"))
        record = log_pb2.AccessRecord(
            access_id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            principal=types_pb2.Principal(
                kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=self.tenant, id="phone-1"
            ),
            resource=log_pb2.Resource(
                kind=log_pb2.RESOURCE_KIND_CLIP, device_id=device, clip_id="clip-1"
            ),
            purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
            service="clip_ingest",
            occurred_at=to_timestamp(occurred_at),
        )
        await stub.Append(pb.AppendRequest(record=record), timeout=15)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
        for client in self._clients:
            await client.close()


@pytest.fixture
async def household(platform: Platform, profiles_home: Path) -> AsyncIterator[Household]:
    opened = Household(platform, profiles_home)
    yield opened
    await opened.close()


def cli(home: Path, profile: Profile, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "privacam_sdk.cli", "--home", str(home),
        "--profile", profile.name, "access-log", *arguments,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={**os.environ},
    )  # fmt: skip


def drop(index: int) -> Callable[[Response], None]:
    """Leave entry ``index`` out of the answer, wherever it was."""

    def rewrite(response: Response) -> None:
        for field in (response.entries, response.other_entries):
            kept = [e for e in field if e.index != index]
            del field[:]
            field.extend(kept)

    return rewrite


def pass_off_as_other(index: int) -> Callable[[Response], None]:
    """Move a matching entry ``index`` among the non-matching ones."""

    def rewrite(response: Response) -> None:
        moved = [e for e in response.entries if e.index == index]
        kept = [e for e in response.entries if e.index != index]
        del response.entries[:]
        response.entries.extend(kept)
        response.other_entries.extend(moved)

    return rewrite


async def test_hidden_log_entry_detected(household: Household, profiles_home: Path) -> None:
    camera, other = str(uuid.uuid4()), str(uuid.uuid4())
    start = datetime.now(UTC) - timedelta(minutes=4)
    # Entry 2 is an access to `camera`, inside the time window [start+90s, start+150s).
    for minutes, device in enumerate((camera, other, camera, other, camera)):
        await household.append(device, start + timedelta(seconds=60 * minutes))
    since, until = start + timedelta(seconds=90), start + timedelta(seconds=150)
    filters: list[tuple[str, dict[str, Any], list[str]]] = [
        ("all", {}, []),
        ("by camera", {"device_id": camera}, ["--camera", camera]),
        (
            "by time",
            {"since": since, "until": until},
            ["--since", since.isoformat(), "--until", until.isoformat()],
        ),
    ]
    # The real log: every listing is complete, with small pages too.
    honest = household.reader()
    assert len((await honest.list(page_size=2)).entries) == 5
    assert [e.index for e in (await honest.list(device_id=camera, page_size=2)).entries] == [
        0,
        2,
        4,
    ]
    assert [e.index for e in (await honest.list(since=since, until=until)).entries] == [2]

    proxy = await household.start_proxy()
    for what, arguments, flags in filters:
        proxy.entries = drop(2)
        for page_size in (500, 2):
            with pytest.raises(EntryMissing) as missing:
                await household.reader(through_proxy=True).list(page_size=page_size, **arguments)
            assert missing.value.index == 2, what
            assert "entry 2 " in str(missing.value), what
        result = await asyncio.to_thread(
            cli, profiles_home, household.profile(through_proxy=True), "list", *flags
        )
        assert result.returncode == 3, (what, result.stdout, result.stderr)
        assert "LOG VERIFICATION FAILED" in result.stdout, what
        assert "entry 2 " in result.stdout, (what, result.stdout)
        if arguments:  # a matching entry listed as not matching is just as hidden
            proxy.entries = pass_off_as_other(2)
            with pytest.raises(EntryMissing, match="not matching") as missing:
                await household.reader(through_proxy=True).list(**arguments)
            assert missing.value.index == 2, what

    # The last entry cut off, and the page claims to end there.
    def cut(response: Response) -> None:
        drop(4)(response)
        response.covered_until = 4

    proxy.entries = cut
    with pytest.raises(EntryMissing, match="stops at entry 4") as missing:
        await household.reader(through_proxy=True).list()
    assert missing.value.index == 4


def add_key(key_id: str, rotation: log_pb2.KeyRotation | None = None) -> Callable[[Any], None]:
    """List one more signing key, with or without a rotation statement."""
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    if rotation is not None:
        public = rotation.public_key

    def rewrite(response: pb.ListSigningKeysResponse) -> None:
        key = response.keys.add(key_id=key_id, public_key=public)
        if rotation is not None:
            key.rotation.CopyFrom(rotation)

    return rewrite


async def test_signing_key_pinned(
    household: Household, platform: Platform, profiles_home: Path
) -> None:
    await household.append(str(uuid.uuid4()), datetime.now(UTC))
    log_key = access_log_key(platform.pki)
    proxy = await household.start_proxy()
    now = datetime.now(UTC)
    stranger = Ed25519PrivateKey.generate()
    forged = sign_key_rotation(stranger, KEY_ID, "log-forged", stranger.public_key(), now)
    self_signed = sign_key_rotation(stranger, "log-self", "log-self", stranger.public_key(), now)
    refusals: list[tuple[Callable[[Any], None], str]] = [
        (add_key("log-evil"), "'log-evil', which no key this device trusts has signed"),
        (add_key("log-self", self_signed), "'log-self', which no key this device trusts"),
        (add_key("log-forged", forged), "does not verify under trusted key 'test-log-1'"),
        (add_key(KEY_ID), "another public key than the one this device pinned"),
    ]
    for rewrite, message in refusals:
        proxy.keys = rewrite
        reader = household.reader(through_proxy=True)
        with pytest.raises(ReceiptError, match=message):
            await reader.list()
        assert list(reader_keys(reader)) == [KEY_ID]  # nothing new pinned
        result = await asyncio.to_thread(
            cli, profiles_home, household.profile(through_proxy=True), "list"
        )
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert "LOG VERIFICATION FAILED" in result.stdout
    # A profile that pins nothing trusts nothing the log says about itself.
    proxy.keys = lambda response: None
    bare = household.reader(through_proxy=True)
    (bare_profile_dir(bare) / "log-keys.json").unlink()
    with pytest.raises(ReceiptError, match="pins no access-log keys"):
        await bare.list()
    # A rotation signed by the pinned key is followed, and the new key is pinned.
    successor = Ed25519PrivateKey.generate()
    rotation = sign_key_rotation(log_key, KEY_ID, "test-log-2", successor.public_key(), now)
    proxy.keys = add_key("test-log-2", rotation)
    reader = household.reader(through_proxy=True)
    assert (await reader.list()).head.key_id == KEY_ID
    assert sorted(reader_keys(reader)) == [KEY_ID, "test-log-2"]
    # ...and a chain from it (test-log-2 introduces test-log-3), in any listed order.
    third = Ed25519PrivateKey.generate()
    chained = sign_key_rotation(successor, "test-log-2", "test-log-3", third.public_key(), now)

    def chain(response: pb.ListSigningKeysResponse) -> None:
        add_key("test-log-3", chained)(response)
        add_key("test-log-2", rotation)(response)

    proxy.keys = chain
    await household.reader(through_proxy=True).list()
    # The real log lists its keys with their validity: the one it started with is valid
    # since the epoch and has no statement.
    keys = await household.upstream().ListSigningKeys(pb.ListSigningKeysRequest(), timeout=15)
    (key,) = keys.keys
    assert (key.key_id, key.valid_from.seconds, key.HasField("retired_at")) == (KEY_ID, 0, False)
    assert not key.HasField("rotation")


def reader_keys(reader: AccessLogReader) -> dict[str, Any]:
    """The keys the reader's profile pins now."""
    return reader._client.profile.log_keys()


def bare_profile_dir(reader: AccessLogReader) -> Path:
    return reader._client.profile.directory


async def delete_account(platform: Platform, tenant: str) -> None:
    """What device_auth does when an account is cancelled: AccountDeleted on the identity
    topic, which the access log turns into the end of the household's log."""
    producer = EventProducer(
        kafka_settings(platform.stack_env, "device_auth", platform.namespace),
        "test-log-deletion",
    )
    await producer.start()
    try:
        await producer.publish(
            topics.IDENTITY,
            tenant,
            identity_events.IdentityEvent(
                metadata=types_pb2.EventMetadata(event_id=str(uuid.uuid4()), tenant_id=tenant),
                account_deleted=identity_events.AccountDeleted(cancellation_id=str(uuid.uuid4())),
            ),
        )
    finally:
        await producer.stop()


async def test_deleted_log_is_not_truncation(
    household: Household, platform: Platform, profiles_home: Path
) -> None:
    for _ in range(3):
        await household.append(str(uuid.uuid4()), datetime.now(UTC))
    reader = household.reader()
    remembered = (await reader.list()).head
    assert remembered.tree_size == 3
    profile = household.profile(through_proxy=False)
    (profile.directory / "access-log-heads.json").write_text(
        (bare_profile_dir(reader) / "access-log-heads.json").read_text()
    )
    upstream = household.upstream()
    before = datetime.now(UTC) - timedelta(seconds=1)
    await delete_account(platform, household.tenant)
    deadline = time.monotonic() + 30
    while not (await upstream.GetTreeHead(pb.GetTreeHeadRequest(), timeout=15)).HasField(
        "deletion"
    ):
        assert time.monotonic() < deadline, "the log was not deleted"
        await asyncio.sleep(0.2)

    # The device that saw 3 entries is told the log was deleted, not that it was tampered with.
    with pytest.raises(LogDeleted) as deleted:
        await reader.list()
    assert deleted.value.final_size == 3
    assert before <= deleted.value.deleted_at <= datetime.now(UTC)
    assert "after 3 entries" in str(deleted.value)
    result = await asyncio.to_thread(cli, profiles_home, profile, "list")
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "log was deleted at" in result.stdout
    assert "after 3 entries" in result.stdout
    assert "LOG VERIFICATION FAILED" not in result.stdout
    # A first look gets the same answer.
    with pytest.raises(LogDeleted):
        await household.reader().list()

    # A log that answers with an empty head and no statement truncated the log: the device
    # that remembers 3 entries says so (the head is signed with the log's own key here).
    proxy = await household.start_proxy()
    empty = sign_tree_head(
        access_log_key(platform.pki), KEY_ID, household.tenant, 0, EMPTY_ROOT, datetime.now(UTC)
    )

    def truncated(response: Response) -> None:
        response.ClearField("deletion")
        response.tree_head.CopyFrom(empty)
        response.covered_until = 0

    proxy.entries = truncated
    through_proxy = household.reader(through_proxy=True)
    heads = bare_profile_dir(reader) / "access-log-heads.json"
    (bare_profile_dir(through_proxy) / "access-log-heads.json").write_text(heads.read_text())
    with pytest.raises(LogTampered, match="now has 0 entries where it had 3"):
        await through_proxy.list()
    # A statement that contradicts the remembered head, or that the log's key did not sign,
    # is refused too.
    stranger = Ed25519PrivateKey.generate()
    for statement, error, message in (
        (
            sign_log_deletion(
                access_log_key(platform.pki), KEY_ID, household.tenant, 2,
                remembered.root_hash, datetime.now(UTC),
            ),
            LogTampered,
            "deleted after 2 entries, but it had 3",
        ),
        (
            sign_log_deletion(
                stranger, KEY_ID, household.tenant, 3, remembered.root_hash, datetime.now(UTC)
            ),
            ReceiptError,
            "forged or altered",
        ),
        (
            sign_log_deletion(
                access_log_key(platform.pki), KEY_ID, str(uuid.uuid4()), 3,
                remembered.root_hash, datetime.now(UTC),
            ),
            ReceiptError,
            "another household's deletion statement",
        ),
    ):  # fmt: skip

        def replaced(response: Response, statement: Any = statement) -> None:
            response.deletion.CopyFrom(statement)

        proxy.entries = replaced
        with pytest.raises(error, match=message):
            await through_proxy.list()
