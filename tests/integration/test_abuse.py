"""Abuse and bad input (issue #10): oversized messages, a flood of enrollments from one
address, and slow clients on unary calls, against the real services.

Covered elsewhere: PIN guessing (test_device_auth's 10,000-guess attack), reused claim
tokens (test_device_auth), replayed receipts (test_access_log), stalled and cancelled
uploads (test_clip_ingest).

The enrollment limit counts calls per address in fixed windows, so the flood runs first,
against a device_auth replica of its own (a low limit in a short window, its own Kafka
namespace and so its own counters, needing only the stack), and the test that needs its
window to pass comes last: the tests in between run while it waits.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from minio import Minio

from privacam.clips.v1 import clip_service_pb2 as clips_pb
from privacam.clips.v1 import clip_service_pb2_grpc as clips_grpc
from privacam.diagnostics.v1 import diagnostics_service_pb2 as diagnostics_pb
from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import upload_clip, upload_requests
from privacam_sdk.enrollment import Enrollment, _key_pem, _pem_chain, new_key_and_csr
from services.clip_ingest.domain.model import object_name
from services.common.healthcheck import serving
from services.common.settings import DEFAULT_MAX_MESSAGE_BYTES
from tests.harness import (
    SERVICES,
    Platform,
    ServiceProcess,
    cleanup_namespace,
    make_service,
    metric,
    mtls_channel,
    new_namespace,
    running,
    stack_minio,
)
from tests.integration.test_clip_ingest import BUCKET, _home, clip, objects_of
from tests.pki_helpers import PkiFactory

PASSWORD = "a long enough passphrase"
GET_PROBE = "/privacam.diagnostics.v1.DiagnosticsService/GetProbe"
SIGN_IN = "/privacam.identity.v1.DeviceAuthService/SignIn"
GET_ACCOUNT = "/privacam.identity.v1.DeviceAuthService/GetAccount"
_PAD_FIELD = 536_870_911  # the largest field number: unknown to every request message

# The flood replica: a few enrollment calls per window, and a smaller message limit, to
# show the setting (not gRPC's own default, which equals ours) is what refuses.
LIMIT = 4
FLOOD_EXTRA = 6
REPLICA_MAX_MESSAGE_BYTES = 1024 * 1024
FLOOD_ROOM = 6  # seconds the window must have left for every flood call to land in it
WINDOW = 20  # seconds: the replica's ENROLLMENT_WINDOW_SECONDS
THROTTLED = re.compile(r"too many requests from this address; try again in (\d+) s")


# --- helpers -------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def padded(message: Message, size: int) -> bytes:
    """`message` with an unknown field appended so that it is exactly `size` bytes: a
    parser keeps unknown fields, so at the limit the server sees the request itself."""
    base = message.SerializeToString()
    tag = _varint(_PAD_FIELD << 3 | 2)
    for width in range(1, 6):
        length = size - len(base) - len(tag) - width
        if length >= 0 and len(_varint(length)) == width:
            data = base + tag + _varint(length) + bytes(length)
            assert len(data) == size
            return data
    raise ValueError(f"cannot pad {type(message).__name__} to {size} bytes")


def _raw(data: bytes) -> bytes:
    return data


async def call_raw(
    channel: grpc.aio.Channel, method: str, data: bytes, response: type[Message]
) -> tuple[grpc.StatusCode, str]:
    """Send already-serialized bytes to a unary method; its status and details."""
    call = channel.unary_unary(
        method, request_serializer=_raw, response_deserializer=response.FromString
    )
    try:
        await call(data, timeout=30)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def enrollment_channel(pki: PkiFactory, target: str) -> grpc.aio.Channel:
    """Server-authenticated TLS only, as an app or camera without a certificate yet."""
    return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(pki.ca_file.read_bytes()))


def probe_request() -> diagnostics_pb.GetProbeRequest:
    return diagnostics_pb.GetProbeRequest(probe_id=secrets.token_hex(16))


async def assert_size_limit(
    channel: grpc.aio.Channel,
    method: str,
    request: Message,
    response: type[Message],
    limit: int,
    expected_at_limit: grpc.StatusCode,
) -> None:
    """A request of exactly `limit` bytes reaches the handler; one byte more is refused
    by the server's gRPC itself."""
    code, details = await call_raw(channel, method, padded(request, limit), response)
    assert code is expected_at_limit, (code, details)
    code, details = await call_raw(channel, method, padded(request, limit + 1), response)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert too_large(limit).search(details), details


def too_large(limit: int) -> re.Pattern[str]:
    """gRPC's own words when a server refuses a message over its limit."""
    return re.compile(rf"^SERVER: Received message larger than max \(\d+ vs\. {limit}\)")


# --- the enrollment flood (its replica, and the refusals) ------------------------------------


@dataclass
class Flood:
    replica: ServiceProcess
    enrollment: Enrollment
    home: Path
    answers: dict[str, list[tuple[grpc.StatusCode, str]]]
    registered: list[tuple[Profile, str]]
    """Accounts the flood's admitted RegisterAccount calls made: (profile, login)."""
    window_ends: float
    """Wall-clock time at which the flood's rate-limit window ends."""

    @property
    def public_endpoint(self) -> str:
        return f"127.0.0.1:{self.replica.public_port}"


@pytest.fixture(scope="module")
def flood_replica(
    stack_env: dict[str, str], pki: PkiFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """device_auth with a low enrollment limit and a Kafka namespace (so rate-limit
    counters) of its own. It needs only the stack: when this module starts the platform,
    the platform starts while the flood's window runs out."""
    namespace = new_namespace(stack_env, "abuse")
    log_dir = tmp_path_factory.mktemp("abuse")
    replica = make_service("device_auth", pki, stack_env, namespace, log_dir)
    replica.env["PRIVACAM_DEVICE_AUTH_ENROLLMENT_CALLS_PER_WINDOW"] = str(LIMIT)
    replica.env["PRIVACAM_DEVICE_AUTH_ENROLLMENT_WINDOW_SECONDS"] = str(WINDOW)
    replica.env["PRIVACAM_DEVICE_AUTH_MAX_MESSAGE_BYTES"] = str(REPLICA_MAX_MESSAGE_BYTES)
    try:
        with running(replica):
            yield replica
    finally:
        cleanup_namespace(stack_env, namespace)


def _upload_blocking(
    camera: Profile, messages: list[clips_pb.UploadClipRequest]
) -> tuple[grpc.StatusCode, str]:
    """An upload on grpc-python's blocking client: the server's status, as sent."""
    credentials = grpc.ssl_channel_credentials(
        camera.ca_file.read_bytes(), camera.key_file.read_bytes(), camera.cert_file.read_bytes()
    )
    with grpc.secure_channel(camera.endpoint("clip_ingest"), credentials) as channel:
        upload = clips_grpc.ClipIngestServiceStub(channel).UploadClip
        try:
            upload(iter(messages), timeout=30)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def _answer(call: Any) -> tuple[grpc.StatusCode, str, Any]:
    try:
        reply = await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or "", None
    return grpc.StatusCode.OK, "", reply


@pytest.fixture(scope="module")
async def flood(
    pki: PkiFactory, flood_replica: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Flood:
    """LIMIT + FLOOD_EXTRA calls of each enrollment method at once, from one address,
    all inside one rate-limit window (the limit's windows are fixed)."""
    home = tmp_path_factory.mktemp("abuse-profiles")
    endpoints = {"device_auth": flood_replica.endpoint}
    public = f"127.0.0.1:{flood_replica.public_port}"
    enrollment = Enrollment(pki.ca_file.read_bytes(), public, endpoints, home=home)
    left = WINDOW - time.time() % WINDOW
    if left < FLOOD_ROOM:  # too close to the window's end for the flood to fit in it
        await asyncio.sleep(left + 0.2)
    window_ends = (time.time() // WINDOW + 1) * WINDOW
    count = LIMIT + FLOOD_EXTRA
    logins = [f"flood-{secrets.token_hex(4)}" for _ in range(count)]
    keys = [new_key_and_csr() for _ in range(count)]
    async with enrollment_channel(pki, public) as channel:
        stub = pb_grpc.DeviceAuthServiceStub(channel)
        await channel.channel_ready()
        calls: dict[str, list[Any]] = {
            "RegisterAccount": [
                stub.RegisterAccount(
                    pb.RegisterAccountRequest(login=login, password=PASSWORD, csr=csr), timeout=30
                )
                for login, (_, csr) in zip(logins, keys, strict=True)
            ],
            "SignIn": [
                stub.SignIn(
                    pb.SignInRequest(
                        login=f"nobody-{secrets.token_hex(4)}", password=PASSWORD, csr=keys[0][1]
                    ),
                    timeout=30,
                )
                for _ in range(count)
            ],
            "EnrollCamera": [
                stub.EnrollCamera(
                    pb.EnrollCameraRequest(
                        claim_token=secrets.token_urlsafe(32), csr=keys[0][1], serial="SN-FLOOD"
                    ),
                    timeout=30,
                )
                for _ in range(count)
            ],
        }
        results = {
            method: await asyncio.gather(*(_answer(c) for c in method_calls))
            for method, method_calls in calls.items()
        }
    registered = []
    for login, (key, _), (code, _, reply) in zip(
        logins, keys, results["RegisterAccount"], strict=True
    ):
        if code is grpc.StatusCode.OK:
            profile = Profile.create(
                f"flood-{login}",
                pki.ca_file.read_bytes(),
                _pem_chain(reply.certificate),
                _key_pem(key),
                endpoints,
                pki.trust_domain,
                home,
            )
            registered.append((profile, login))
    answers = {m: [(code, details) for code, details, _ in r] for m, r in results.items()}
    return Flood(flood_replica, enrollment, home, answers, registered, window_ends)


async def test_an_enrollment_flood_from_one_address_is_refused_past_the_limit(
    flood: Flood,
) -> None:
    expected_admitted = {
        "RegisterAccount": grpc.StatusCode.OK,
        "SignIn": grpc.StatusCode.UNAUTHENTICATED,  # no such login
        "EnrollCamera": grpc.StatusCode.UNAUTHENTICATED,  # no such claim token
    }
    for method, answers in flood.answers.items():
        codes = Counter(code for code, _ in answers)
        # Exactly LIMIT calls of each method reach its handler; every other one is refused.
        assert codes == {
            expected_admitted[method]: LIMIT,
            grpc.StatusCode.RESOURCE_EXHAUSTED: FLOOD_EXTRA,
        }, (method, codes)
        for code, details in answers:
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                # A message a person understands: what happened and when to try again.
                match = THROTTLED.fullmatch(details)
                assert match, details
                assert 1 <= int(match.group(1)) <= WINDOW
    assert len(flood.registered) == LIMIT
    # The limit holds for the rest of the window, even for a well-formed request ...
    code, details, _ = await _answer(
        flood.enrollment.register_account("late", "late-" + secrets.token_hex(4), PASSWORD)
    )
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert THROTTLED.fullmatch(details), details
    # ... while the service stays SERVING and certificate holders are not affected.
    assert serving(f"127.0.0.1:{flood.replica.health_port}")
    profile, login = flood.registered[0]
    async with mtls_channel(flood.replica.endpoint, profile) as channel:
        account = await pb_grpc.DeviceAuthServiceStub(channel).GetAccount(
            pb.GetAccountRequest(), timeout=10
        )
    assert account.login == login


# --- oversized messages ------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
async def test_a_message_over_the_limit_is_refused_and_the_service_carries_on(
    platform: Platform, service: str
) -> None:
    process = platform.services[service]
    before = metric(process.metrics_port, "grpc_server_started_total", grpc_method="GetProbe")
    async with mtls_channel(process.endpoint, platform.pki.operator()) as channel:
        await assert_size_limit(
            channel,
            GET_PROBE,
            probe_request(),
            diagnostics_pb.GetProbeResponse,
            DEFAULT_MAX_MESSAGE_BYTES,
            grpc.StatusCode.OK,
        )
        assert serving(f"127.0.0.1:{process.health_port}"), service
        # The next normal call on the same connection is answered.
        code, details = await call_raw(
            channel,
            GET_PROBE,
            probe_request().SerializeToString(),
            diagnostics_pb.GetProbeResponse,
        )
        assert code is grpc.StatusCode.OK, (service, details)
    # The refused message never reached the interceptor: two calls started, not three.
    after = metric(process.metrics_port, "grpc_server_started_total", grpc_method="GetProbe")
    assert after - before == 2, service


async def test_a_message_over_the_limit_is_refused_on_the_enrollment_port(
    platform: Platform, profiles_home: Path
) -> None:
    device_auth = platform.services["device_auth"]
    async with enrollment_channel(platform.pki, f"127.0.0.1:{device_auth.public_port}") as channel:
        # An empty SignIn with the padding is judged by its handler: INVALID_ARGUMENT.
        await assert_size_limit(
            channel,
            SIGN_IN,
            pb.SignInRequest(),
            pb.SignInResponse,
            DEFAULT_MAX_MESSAGE_BYTES,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    assert serving(f"127.0.0.1:{device_auth.health_port}")
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    _, tenant = await enrollment.register_account(f"big-{suffix}", f"big-{suffix}", PASSWORD)
    assert tenant


async def test_the_limit_is_the_services_setting(pki: PkiFactory, flood: Flood) -> None:
    """The flood replica runs with MAX_MESSAGE_BYTES = 1 MiB on both of its ports."""
    replica = flood.replica
    async with mtls_channel(replica.endpoint, pki.operator()) as channel:
        await assert_size_limit(
            channel,
            GET_PROBE,
            probe_request(),
            diagnostics_pb.GetProbeResponse,
            REPLICA_MAX_MESSAGE_BYTES,
            grpc.StatusCode.OK,
        )
    async with enrollment_channel(pki, flood.public_endpoint) as channel:
        # GetAccount is not served without a certificate (and not rate-limited): the
        # interceptor's answer shows the message got through.
        await assert_size_limit(
            channel,
            GET_ACCOUNT,
            pb.GetAccountRequest(),
            pb.GetAccountResponse,
            REPLICA_MAX_MESSAGE_BYTES,
            grpc.StatusCode.UNAUTHENTICATED,
        )
    assert serving(f"127.0.0.1:{replica.health_port}")


@pytest.fixture(scope="module")
def minio(platform: Platform) -> Minio:
    return stack_minio(platform.stack_env)


async def test_an_upload_with_one_oversized_chunk_is_refused_and_stores_nothing(
    platform: Platform, profiles_home: Path, minio: Minio
) -> None:
    home = await _home(platform, profiles_home)
    data = clip()
    messages = list(upload_requests(data, "oversized", datetime.now(UTC)))
    # The first chunk as sent, then one whose data alone is the whole limit.
    huge = clips_pb.UploadClipRequest(
        chunk=clips_pb.ClipChunk(
            offset=len(messages[1].chunk.data), data=bytes(DEFAULT_MAX_MESSAGE_BYTES)
        )
    )
    assert huge.ByteSize() > DEFAULT_MAX_MESSAGE_BYTES

    sent = [messages[0], messages[1], huge, *messages[2:]]
    # On grpc-python's blocking client: its asyncio client, still writing the 4 MiB when the
    # refusal arrives, reports the failed write as its own INTERNAL "Internal error from
    # Core" instead of the server's status (about one run in four); the blocking client
    # stops writing and reads the status the server sent. Ten tries, every one refused.
    for _ in range(10):
        code, details = await asyncio.to_thread(_upload_blocking, home.camera, sent)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert too_large(DEFAULT_MAX_MESSAGE_BYTES).search(details), details
    assert objects_of(minio, home.tenant) == []
    # MinIO lists a bucket's unfinished uploads by whole object name only.
    name = object_name(home.tenant, home.device, "oversized")
    pending = minio._list_multipart_uploads(BUCKET, prefix=name)
    assert list(pending.uploads) == []
    assert serving(f"127.0.0.1:{platform.services['clip_ingest'].health_port}")
    # The refused upload gave its clip id back: the camera's next try is stored.
    async with PrivacamClient(home.camera) as camera:
        for _ in range(50):
            code, details, reply = await _answer(upload_clip(camera, data, "oversized"))
            if code is not grpc.StatusCode.ABORTED:
                break
            await asyncio.sleep(0.2)
    assert code is grpc.StatusCode.OK, (code, details)
    assert reply.created
    assert len(objects_of(minio, home.tenant)) == 1


# --- slow clients ------------------------------------------------------------------------------


async def test_a_caller_with_a_short_deadline_gets_deadline_exceeded_and_nothing_lingers(
    platform: Platform, profiles_home: Path
) -> None:
    """SignIn does real work (an argon2id hash of about 44 ms, a certificate, a Kafka
    event): callers that give it 10 ms get DEADLINE_EXCEEDED, the server ends their calls,
    and the next caller with a sensible deadline is served."""
    device_auth = platform.services["device_auth"]
    enrollment = platform.enrollment(profiles_home)
    login = f"slow-{secrets.token_hex(4)}"
    await enrollment.register_account(login, login, PASSWORD)
    # Fewer than the account's 5 password tries: a try is counted before it is checked,
    # and these are never finished.
    impatient = 3
    async with enrollment_channel(platform.pki, f"127.0.0.1:{device_auth.public_port}") as channel:
        stub = pb_grpc.DeviceAuthServiceStub(channel)
        await channel.channel_ready()  # the deadline is spent on the call, not the handshake
        _, csr = new_key_and_csr()
        request = pb.SignInRequest(login=login, password=PASSWORD, csr=csr)
        answers = await asyncio.gather(
            *(_answer(stub.SignIn(request, timeout=0.01)) for _ in range(impatient))
        )
        assert [code for code, _, _ in answers] == [grpc.StatusCode.DEADLINE_EXCEEDED] * impatient
        # No call is left running on the server: every started SignIn has ended.
        for _ in range(50):
            started = metric(
                device_auth.metrics_port, "grpc_server_started_total", grpc_method="SignIn"
            )
            handled = metric(
                device_auth.metrics_port, "grpc_server_handled_total", grpc_method="SignIn"
            )
            if started == handled:
                break
            await asyncio.sleep(0.1)
        assert started == handled, (started, handled)
        assert serving(f"127.0.0.1:{device_auth.health_port}")
        code, details, reply = await _answer(stub.SignIn(request, timeout=15))
    assert code is grpc.StatusCode.OK, (code, details)
    assert reply.tenant_id


# --- the flood's window passes (last: the tests above run while it waits) --------------------


async def test_enrollment_is_served_again_once_the_window_passes(flood: Flood) -> None:
    await asyncio.sleep(max(0.0, flood.window_ends - time.time()) + 0.5)
    replica = flood.replica
    assert serving(f"127.0.0.1:{replica.health_port}")
    login = "after-" + secrets.token_hex(4)
    owner, tenant = await flood.enrollment.register_account("after", login, PASSWORD)
    assert tenant
    _, signed_in = await flood.enrollment.sign_in("after-2", login, PASSWORD)
    assert signed_in == tenant
    async with mtls_channel(replica.endpoint, owner) as channel:
        token = await pb_grpc.DeviceAuthServiceStub(channel).CreateClaimToken(
            pb.CreateClaimTokenRequest(), timeout=10
        )
    _, device = await flood.enrollment.enroll_camera("after-cam", token.claim_token, "SN-AFTER")
    assert device
