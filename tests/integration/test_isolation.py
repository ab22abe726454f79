"""Isolation: every RPC of every service, called by every kind of principal on resources it
did not earn. The exact status, and no answer that tells whether a resource exists.

- Kinds of caller a method does not admit are PERMISSION_DENIED, for every method.
- Certificates that are no identity (none, another CA's, expired) never get a call
  through; a revoked one is UNAUTHENTICATED at every service.
- A real household's ids (its tenant, camera, clip, grant, app install, export, live-view
  session, an operator's access request to it, and a third household's account
  cancellation), sent by another household's app or camera in every id field of every
  request, get the same status, message and content as ids that exist nowhere, and
  change nothing of that household's: the seed incidents' "strangers' stills" start with
  an answer that differs. Requests are built as their clients build them where only that
  reaches the ids: a whole clip uploaded under the id, a privacy statement signed for the
  id's camera, a camera's control stream (hello, then an answer to the session) and a
  signalling join held open. The victim watches its camera meanwhile: its camera and its
  app must receive nothing. A check without servers fails when a request message gains an
  id field the matrix does not set.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from privacam.accesslog.v1 import access_log_service_pb2 as access_log_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as access_log_grpc
from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.identity.v1 import identity_pb2, privacy_pb2
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam.relay.v1 import relay_broker_service_pb2 as relay_pb
from privacam.retention.v1 import retention_service_pb2 as retention_pb
from privacam.retention.v1 import retention_service_pb2_grpc as retention_grpc
from privacam_core.identity import PrincipalKind, principal_from_pem, spiffe_uri, subject_digest
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import download_clip, list_clips, upload_clip, upload_requests
from privacam_sdk.privacy import Mode, make_statement, sign_statement
from services.common import topics
from services.common.pki import certificate_pem, issue_leaf, new_private_key, private_key_pem
from tests.harness import SERVICES, Platform, kafka_options, mtls_channel, state_signing
from tests.live_view import CameraAgent, SignalCall, open_signal, read_signal, relay_stub
from tests.media import make_mp4
from tests.pki_helpers import Identity
from tests.rpcs import Rpc, all_rpcs

PASSWORD = "a long enough passphrase"
KINDS = (PrincipalKind.APP, PrincipalKind.CAMERA, PrincipalKind.SERVICE, PrincipalKind.OPERATOR)


RPCS = all_rpcs()
NoticesCall = grpc.aio.UnaryStreamCall[
    relay_pb.StreamNoticesRequest, relay_pb.StreamNoticesResponse
]


def _channel(platform: Platform, service: str, identity: Identity) -> grpc.Channel:
    ca, cert, key = identity.credentials()
    return grpc.secure_channel(
        platform.endpoints()[service], grpc.ssl_channel_credentials(ca, key, cert)
    )


SETTLE_SECONDS = 1.0
"""How long a bidirectional stream is watched after its first response for its end."""


class _HeldOpen:
    """A client stream's messages, then the stream held open (not half-closed) until
    released, as a camera or an app keeps it: a server may answer a stream it sees end
    otherwise than one that goes on."""

    def __init__(self, messages: Sequence[Message]) -> None:
        self._messages = list(messages)
        self.released = threading.Event()

    def __iter__(self) -> Iterator[Message]:
        yield from self._messages
        self.released.wait()


def _drop_times(message: Message) -> None:
    for field_, value in message.ListFields():
        if field_.message_type is None or field_.message_type.GetOptions().map_entry:
            continue
        if field_.message_type.full_name == "google.protobuf.Timestamp":
            message.ClearField(field_.name)
        elif field_.is_repeated:
            for item in value:
                _drop_times(item)
        else:
            _drop_times(value)


def _text(message: Message) -> str:
    """A response in text form without its timestamps (when a call ran tells nothing)."""
    copy = type(message)()
    copy.CopyFrom(message)
    _drop_times(copy)
    return str(copy)


def _call(
    channel: grpc.Channel,
    rpc: Rpc,
    request: Message | Sequence[Message],
    timeout: float = 5,
) -> tuple[grpc.StatusCode, str]:
    """The status and, for OK, the first response in text form (else the error details).

    A client stream sends the given messages: a client-streaming call then ends its
    stream and gets the one response; a bidirectional one keeps its stream open, reads
    the first response and then waits SETTLE_SECONDS for the stream's end: its answer is
    that response and the final status, or that response and "open"."""
    requests = [request] if isinstance(request, Message) else list(request)
    method = rpc.method
    parse = GetMessageClass(method.output_type).FromString

    def serialize(message: Message) -> bytes:
        return message.SerializeToString()

    held = _HeldOpen(requests)
    call: Any = None
    try:
        if method.client_streaming and method.server_streaming:
            call = channel.stream_stream(rpc.path, serialize, parse)(iter(held), timeout=timeout)
            first = _text(next(call))
            ended = threading.Event()
            call.add_done_callback(lambda _: ended.set())
            if not ended.wait(SETTLE_SECONDS):
                return grpc.StatusCode.OK, f"{first}\n(stream open)"
            if call.code() is not grpc.StatusCode.OK:
                return call.code(), call.details() or ""
            return grpc.StatusCode.OK, f"{first}\n(stream ended)"
        if method.client_streaming:
            response = channel.stream_unary(rpc.path, serialize, parse)(
                iter(requests), timeout=timeout
            )
        elif method.server_streaming:
            call = channel.unary_stream(rpc.path, serialize, parse)(requests[0], timeout=timeout)
            response = next(call)
        else:
            response = channel.unary_unary(rpc.path, serialize, parse)(requests[0], timeout=timeout)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    except StopIteration:
        return grpc.StatusCode.OK, ""
    finally:
        if call is not None:
            call.cancel()
        held.released.set()
    return grpc.StatusCode.OK, _text(response)


def _identity(platform: Platform, kind: PrincipalKind, service: str) -> Identity:
    tenant = str(uuid.uuid4())
    if kind is PrincipalKind.APP:
        return platform.pki.app(tenant, str(uuid.uuid4()))
    if kind is PrincipalKind.CAMERA:
        return platform.pki.camera(tenant, str(uuid.uuid4()))
    if kind is PrincipalKind.SERVICE:
        return platform.pki.service(service)
    return platform.pki.operator()


def test_every_rpc_refuses_every_kind_of_caller_it_does_not_admit(platform: Platform) -> None:
    wrong: list[str] = []
    checked = 0
    channels: dict[tuple[str, PrincipalKind], grpc.Channel] = {}
    for rpc in RPCS:
        request = GetMessageClass(rpc.method.input_type)()
        for kind in KINDS:
            if kind in rpc.kinds:
                continue
            key = (rpc.service, kind)
            if key not in channels:
                # A service certificate of *another* service where services are not admitted.
                other = "device_auth" if rpc.service != "device_auth" else "key_manager"
                channels[key] = _channel(platform, rpc.service, _identity(platform, kind, other))
            code, _ = _call(channels[key], rpc, request)
            checked += 1
            if code is not grpc.StatusCode.PERMISSION_DENIED:
                wrong.append(f"{rpc} as {kind.value}: {code.name}")
    for channel in channels.values():
        channel.close()
    assert checked > 150
    assert wrong == []


def _expired(platform: Platform) -> Identity:
    key = new_private_key()
    uri = spiffe_uri(platform.pki.trust_domain, PrincipalKind.OPERATOR, "expired")
    issued = issue_leaf(
        platform.pki.operator_ca,
        key.public_key(),
        uri,
        datetime.now(UTC) - timedelta(days=3),
        timedelta(days=1),
    )
    folder = platform.pki.directory / "extra" / "expired-operator"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.key").write_bytes(private_key_pem(key))
    (folder / "tls.crt").write_bytes(certificate_pem(issued, platform.pki.operator_ca.certificate))
    return Identity(platform.pki.ca_file, folder / "tls.crt", folder / "tls.key")


def test_no_foreign_or_expired_certificate_gets_a_call_through(platform: Platform) -> None:
    callers = {
        "no certificate": None,
        "another CA": platform.pki.foreign_operator(),
        "expired": _expired(platform),
    }
    for service in SERVICES:
        for label, identity in callers.items():
            if identity is None:
                credentials = grpc.ssl_channel_credentials(platform.pki.ca_file.read_bytes())
            else:
                ca, cert, key = identity.credentials()
                credentials = grpc.ssl_channel_credentials(ca, key, cert)
            rpc = next(r for r in RPCS if r.service == service and not r.method.client_streaming)
            request = GetMessageClass(rpc.method.input_type)()
            with grpc.secure_channel(platform.endpoints()[service], credentials) as channel:
                code, _ = _call(channel, rpc, request)
            # The TLS handshake fails: the call never reaches any code of ours.
            assert code is grpc.StatusCode.UNAVAILABLE, f"{service}, {label}: {code.name}"


def test_certificate_kind_bound_to_its_ca(platform: Platform) -> None:
    """Whoever holds one issuing CA's key mints only the kinds that CA is for: a
    `service/key-manager` certificate signed by device_auth's CA (cameras and apps), an
    operator signed by it, and a camera signed by the service CA are UNAUTHENTICATED at
    every service. The same identities from the CA of their kind get past authentication."""
    pki, domain = platform.pki, platform.pki.trust_domain
    tenant, device = str(uuid.uuid4()), str(uuid.uuid4())
    key_manager = spiffe_uri(domain, PrincipalKind.SERVICE, "key-manager")
    operator = spiffe_uri(domain, PrincipalKind.OPERATOR, "demo")
    camera = spiffe_uri(domain, PrincipalKind.CAMERA, device, tenant)
    forged = {
        "service/key-manager by the device CA": pki.leaf("kind-svc", key_manager, pki.issuing),
        "operator/demo by the device CA": pki.leaf("kind-op", operator, pki.issuing),
        "camera by the service CA": pki.leaf("kind-cam", camera, pki.service_ca),
        "camera by the operator CA": pki.leaf("kind-cam-op", camera, pki.operator_ca),
    }
    rightful = {
        "service/key-manager by the service CA": pki.leaf("ok-svc", key_manager, pki.service_ca),
        "operator/demo by the operator CA": pki.leaf("ok-op", operator, pki.operator_ca),
        "camera by the device CA": pki.leaf("ok-cam", camera, pki.issuing),
    }
    outcomes: list[tuple[str, str, grpc.StatusCode]] = []
    for service in SERVICES:
        rpc = next(r for r in RPCS if r.service == service and not r.method.client_streaming)
        request = GetMessageClass(rpc.method.input_type)()
        for label, identity in {**forged, **rightful}.items():
            with _channel(platform, service, identity) as channel:
                code, _ = _call(channel, rpc, request)
            outcomes.append((service, label, code))
    for service, label, code in outcomes:
        print(f"{service:<13} {label:<40} {code.name}")
    wrong = [
        (service, label, code.name)
        for service, label, code in outcomes
        if (code is grpc.StatusCode.UNAUTHENTICATED) != (label in forged)
    ]
    assert wrong == []


def test_a_revoked_certificate_is_refused_by_every_service(platform: Platform) -> None:
    tenant, install = str(uuid.uuid4()), str(uuid.uuid4())
    identity = platform.pki.app(tenant, install)
    digest = subject_digest(
        spiffe_uri(platform.pki.trust_domain, PrincipalKind.APP, install, tenant)
    )
    record = RevocationRecord(subject_digest=digest, all_certificates=True)
    key, value = f"subject/{digest.hex()}".encode(), record.SerializeToString()
    # Signed as device_auth, the topic's only writer: readers skip anything else.
    headers = state_signing(platform.pki, "device_auth").signer.headers(
        topics.REVOCATIONS.name, key, value
    )

    async def write() -> None:  # what device_auth writes when the owner signs the app out
        producer = AIOKafkaProducer(
            **kafka_options(platform.stack_env),
            acks="all",
            enable_idempotence=True,
        )
        await producer.start()
        try:
            await producer.send_and_wait(
                platform.namespace + topics.REVOCATIONS.name, value, key=key, headers=headers
            )
        finally:
            await producer.stop()

    asyncio.run(write())
    app_rpcs = {r.service: r for r in RPCS if PrincipalKind.APP in r.kinds}
    deadline = time.monotonic() + 5
    for service, rpc in app_rpcs.items():
        with _channel(platform, service, identity) as channel:
            request = GetMessageClass(rpc.method.input_type)()
            while (code := _call(channel, rpc, request)[0]) is not grpc.StatusCode.UNAUTHENTICATED:
                assert time.monotonic() < deadline, f"{rpc} still answers {code.name}"
                time.sleep(0.1)


# --- another household's ids ------------------------------------------------------------


@dataclass
class Household:
    app: Profile
    camera: Profile
    tenant: str
    device: str
    install: str
    grant: str
    clip: str
    export: str
    friend: str
    """Login of another account, which the household may share its camera with."""


CLIP = make_mp4(6.0, seed=23)


async def _household(platform: Platform, home: Path) -> Household:
    enrollment = platform.enrollment(home)
    suffix = secrets.token_hex(4)
    app, tenant = await enrollment.register_account(f"iso-{suffix}", f"iso-{suffix}", PASSWORD)
    friend = f"friend-{suffix}"
    await enrollment.register_account(f"fr-{suffix}", friend, PASSWORD)
    async with PrivacamClient(app) as client:
        token = await client.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
        camera, device = await enrollment.enroll_camera(
            f"iso-cam-{suffix}", token.claim_token, f"SN-{suffix}"
        )
        grant = await client.device_auth().CreateGrant(
            identity_pb.CreateGrantRequest(
                device_id=device,
                grantee_login=friend,
                scopes=[identity_pb2.GRANT_SCOPE_LIVE],
            ),
            timeout=10,
        )
        await client.device_auth().UpdateCameraSettings(
            identity_pb.UpdateCameraSettingsRequest(device_id=device, activity_alerts_enabled=True),
            timeout=10,
        )
    clip = f"iso-clip-{suffix}"
    async with PrivacamClient(camera) as client:
        await upload_clip(client, CLIP, clip)
    async with mtls_channel(app.endpoint("retention"), app) as channel:
        export = await retention_grpc.RetentionServiceStub(channel).RequestExport(
            retention_pb.RequestExportRequest(), timeout=10
        )
    install = principal_from_pem(app.cert_file.read_bytes(), app.trust_domain).name
    return Household(
        app,
        camera,
        tenant,
        device,
        install,
        grant.grant.grant_id,
        clip,
        export.export.export_id,
        friend,
    )


async def _account(platform: Platform, home: Path) -> tuple[Profile, str]:
    """An account with one app install and nothing else: (profile, tenant)."""
    suffix = secrets.token_hex(4)
    return await platform.enrollment(home).register_account(
        f"iso-acct-{suffix}", f"iso-acct-{suffix}", PASSWORD
    )


async def _cancel(profile: Profile, cancellation_id: str) -> None:
    async with mtls_channel(profile.endpoint("retention"), profile) as channel:
        await retention_grpc.RetentionServiceStub(channel).CancelAccount(
            retention_pb.CancelAccountRequest(password=PASSWORD, cancellation_id=cancellation_id),
            timeout=60,
        )


def _operator_access(platform: Platform, household: Household) -> str:
    """An operator's request, pending, for access to the household's camera and clips."""
    with _channel(platform, "access_log", platform.pki.operator()) as channel:
        asked = access_log_grpc.AccessLogServiceStub(channel).RequestOperatorAccess(
            access_log_pb.RequestOperatorAccessRequest(
                tenant_id=household.tenant,
                reason="The camera drops off Wi-Fi; ticket from the owner",
                scopes=[access_log_pb.OPERATOR_SCOPE_CLIPS],
                device_ids=[household.device],
                duration=Duration(seconds=3600),
            ),
            timeout=15,
        )
    return asked.operator_access.operator_access_id


@dataclass
class World:
    victim: Household
    intruder: Household
    operator_access: str
    """An operator's pending request for access to the victim's household."""
    cancellation: str
    """The cancellation id of a third household, cancelled (cancelling the victim would
    leave nothing to compare)."""
    doomed: tuple[tuple[Profile, str], tuple[Profile, str]]
    """Two accounts (profile, tenant) that cancel themselves in the matrix, one under the
    third household's cancellation id and one under an id that exists nowhere."""


_ID_FIELDS = (
    "tenant_id",
    "device_id",
    "clip_id",
    "grant_id",
    "install_id",
    "export_id",
    "session_id",
    "operator_access_id",
    "cancellation_id",
)
_FILL_DEPTH = 2
_PLAUSIBLE: dict[str, str | int] = {
    "pin": "1234",
    "current_pin": "1234",
    "new_pin": "5678",
    "page_size": 10,
    "firmware_version": "1.0.0-iso",
    "max_sessions": 1,
    "reason": 0,  # EndLiveView: unspecified, which apps and cameras may both give
}
"""Values of fields that are no ids, so that a request gets past validation to its ids."""
_SELF_DESTRUCTIVE = frozenset({"retention.CancelAccount"})
"""Methods that end the caller's account: each call is made by an account of its own."""

Values = Mapping[str, str | int]


def _fill(descriptor: Descriptor, message: Message, values: Values, depth: int = 0) -> None:
    """Every id member (at any depth) set to the given ids; other fields plausible. Of a
    oneof only the first member is set: a client stream's first message (metadata, hello,
    join) carries its ids there (see _requests for the stream's other messages)."""
    for member in descriptor.fields:
        name = member.name
        oneof = member.containing_oneof
        if oneof is not None and oneof.fields[0] is not member:
            continue
        if member.message_type is not None:
            if depth < _FILL_DEPTH and not member.is_repeated:
                child = getattr(message, name)
                _fill(member.message_type, child, values, depth + 1)
        elif member.is_repeated:
            if name.endswith("_ids") and name.removesuffix("s") in values:
                getattr(message, name).append(values[name.removesuffix("s")])
            elif member.enum_type is not None and len(member.enum_type.values) > 1:
                getattr(message, name).append(member.enum_type.values[1].number)
        elif name in values:
            setattr(message, name, values[name])
        elif member.enum_type is not None and len(member.enum_type.values) > 1:
            setattr(message, name, member.enum_type.values[1].number)


_EMBEDDED: dict[str, Descriptor] = {
    "privacam.identity.v1.SignedPrivacyStatement.statement": (
        privacy_pb2.PrivacyStatement.DESCRIPTOR
    ),
}
"""Bytes fields that carry a serialized message (signed as bytes), by the field's full name:
their ids are ids of the request too."""


def _inside(member: FieldDescriptor) -> Descriptor | None:
    """The message a field holds, serialized or not."""
    return _EMBEDDED.get(member.full_name, member.message_type)


def _has_id_field(descriptor: Descriptor, depth: int = 0) -> bool:
    return any(
        member.name in _ID_FIELDS
        or member.name.removesuffix("s") in _ID_FIELDS
        or (
            (inner := _inside(member)) is not None
            and depth < _FILL_DEPTH
            and _has_id_field(inner, depth + 1)
        )
        for member in descriptor.fields
    )


@dataclass(frozen=True)
class Caller:
    """Who calls, for requests that must name the caller itself (a signed statement)."""

    tenant: str
    name: str
    key: ec.EllipticCurvePrivateKey

    @staticmethod
    def of(profile: Profile) -> Caller:
        me = principal_from_pem(profile.cert_file.read_bytes(), profile.trust_domain)
        key = load_pem_private_key(profile.key_file.read_bytes(), password=None)
        assert me.tenant_id is not None
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return Caller(me.tenant_id, me.name, key)


def _upload(values: Values, caller: Caller) -> list[Message]:
    """A whole clip under the id: a camera's clip ids are its own, so another household's
    clip id is as new to it as one that exists nowhere."""
    return [*upload_requests(CLIP, str(values["clip_id"]), datetime.now(UTC))]


def _privacy(values: Values, caller: Caller) -> list[Message]:
    """A statement signed by the caller for the id's camera. It names the caller's own
    household and install, which device_auth checks before it looks the camera up: another
    household's or install's id there is refused alike, whoever it is."""
    statement = make_statement(
        Mode("on"),
        tenant_id=caller.tenant,
        device_id=str(values["device_id"]),
        install_id=caller.name,
        issued_at=datetime.now(UTC),
    )
    signed = sign_statement(statement, caller.key)
    return [identity_pb.SetPrivacyModeRequest(statement=signed)]


_BUILT: dict[str, Callable[[Values, Caller], list[Message]]] = {
    "clip_ingest.UploadClip": _upload,
    "device_auth.SetPrivacyMode": _privacy,
}
"""Methods whose ids count only in a request built as a client builds it."""


def _requests(rpc: Rpc, values: Values, caller: Caller) -> list[Message]:
    """What the matrix sends: the request; for a client stream its first message, then one
    message of each other kind that carries ids (a camera's answer to a session); or the
    request as a client builds it where only that reaches the ids (a clip's upload, a
    signed statement)."""
    built = _BUILT.get(str(rpc))
    if built is not None:
        return built(values, caller)
    descriptor = rpc.method.input_type
    message_class = GetMessageClass(descriptor)
    first = message_class()
    _fill(descriptor, first, values)
    requests = [first]
    if rpc.method.client_streaming:
        for oneof in descriptor.oneofs:
            for member in oneof.fields[1:]:
                if member.message_type is not None and _has_id_field(member.message_type):
                    later = message_class()
                    part = getattr(later, member.name)
                    part.SetInParent()
                    _fill(member.message_type, part, values, 1)
                    requests.append(later)
    return requests


def _id_paths(
    descriptor: Descriptor, prefix: str = "", within: frozenset[str] = frozenset()
) -> set[str]:
    """Every field named like an id in the message, at any depth, in every oneof member,
    in serialized messages too."""
    within = within | {descriptor.full_name}
    found: set[str] = set()
    for member in descriptor.fields:
        path = prefix + member.name
        inner = _inside(member)
        if inner is not None:
            if inner.full_name not in within:
                found |= _id_paths(inner, path + ".", within)
        elif member.name == "id" or member.name.endswith(("_id", "_ids")):
            found.add(path)
    return found


def _set_paths(message: Message, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for member, value in message.ListFields():
        path = prefix + member.name
        embedded = _EMBEDDED.get(member.full_name)
        if embedded is not None:
            found |= _set_paths(GetMessageClass(embedded).FromString(value), path + ".")
        elif member.message_type is None or member.message_type.GetOptions().map_entry:
            found.add(path)
        elif member.is_repeated:
            for item in value:
                found |= _set_paths(item, path + ".")
        else:
            found |= _set_paths(value, path + ".")
    return found


def test_the_matrix_sets_every_id_field_apps_and_cameras_send() -> None:
    """The matrix below cannot fall behind the protos: every field named like an id, in
    any message an app or a camera may send (client streams' later messages included), is
    one the matrix sets, to another household's id and to one that exists nowhere."""
    values = {**_PLAUSIBLE, **{name: str(uuid.uuid4()) for name in _ID_FIELDS}}
    caller = Caller(str(uuid.uuid4()), str(uuid.uuid4()), ec.generate_private_key(ec.SECP256R1()))
    missed: list[str] = []
    checked = 0
    for rpc in RPCS:
        if not rpc.kinds & {PrincipalKind.APP, PrincipalKind.CAMERA}:
            continue
        wanted = _id_paths(rpc.method.input_type)
        sent = set[str]().union(*(_set_paths(m) for m in _requests(rpc, values, caller)))
        missed += [f"{rpc}: {path}" for path in sorted(wanted - sent)]
        checked += len(wanted)
    assert missed == [], f"give the matrix these (_ID_FIELDS, the victim's ids): {missed}"
    assert checked >= 35


@pytest.fixture(scope="module")
def world(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> World:
    home = tmp_path_factory.mktemp("isolation")

    async def build() -> World:
        victim = await _household(platform, home / "victim")
        intruder = await _household(platform, home / "intruder")
        third, _ = await _account(platform, home / "third")
        cancellation = str(uuid.uuid4())
        await _cancel(third, cancellation)
        doomed = (
            await _account(platform, home / "doomed"),
            await _account(platform, home / "doomed"),
        )
        return World(victim, intruder, "", cancellation, doomed)

    built = asyncio.run(build())
    built.operator_access = _operator_access(platform, built.victim)
    return built


def _identity_of(profile: Profile) -> Identity:
    return Identity(profile.ca_file, profile.cert_file, profile.key_file)


async def _seen_by(household: Household) -> list[str]:
    """What the household itself sees of its own things (nothing here is logged)."""
    async with PrivacamClient(household.app) as client:
        calls = client.device_auth()
        device = household.device
        cameras = await calls.ListCameras(identity_pb.ListCamerasRequest(), timeout=10)
        settings = await calls.GetCameraSettings(
            identity_pb.GetCameraSettingsRequest(device_id=device), timeout=10
        )
        grants = await calls.ListGrants(identity_pb.ListGrantsRequest(device_id=device), timeout=10)
        installs = await calls.ListAppInstalls(identity_pb.ListAppInstallsRequest(), timeout=10)
        clips = [(c.clip_id, c.size_bytes) async for c in list_clips(client, device)]
        accesses = await access_log_grpc.AccessLogServiceStub(
            client.channel("access_log")
        ).ListOperatorAccess(access_log_pb.ListOperatorAccessRequest(), timeout=10)
    async with mtls_channel(household.app.endpoint("retention"), household.app) as channel:
        exports = await retention_grpc.RetentionServiceStub(channel).ListExports(
            retention_pb.ListExportsRequest(), timeout=10
        )
    return [
        str(cameras),
        str(settings),
        str(grants),
        str(sorted(i.install_id for i in installs.installs)),
        str(clips),
        str(sorted(e.export_id for e in exports.exports)),
        str(sorted((a.operator_access_id, a.state) for a in accesses.operator_accesses)),
    ]


@dataclass
class Watched:
    """The victim watching its own camera while the matrix runs, and what its camera and
    its app receive meanwhile."""

    agent: CameraAgent
    client: PrivacamClient
    session_id: str
    signal: SignalCall
    notices: NoticesCall
    heard: list[str] = field(default_factory=list)
    """What the app's signalling stream received after the camera joined."""
    told: list[str] = field(default_factory=list)
    """The household notices its app received."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _collect(call: SignalCall | NoticesCall, into: list[str]) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        while isinstance(message := await call.read(), Message):  # not EOF
            into.append(str(message))


async def _watch(victim: Household) -> Watched:
    agent = CameraAgent(victim.camera)
    await agent.start()
    client = PrivacamClient(victim.app, timeout=10)
    stub = relay_stub(client)
    started = await stub.StartLiveView(relay_pb.StartLiveViewRequest(device_id=victim.device))
    signal = open_signal(stub)
    await signal.write(
        relay_pb.SignalRequest(join=relay_pb.SignalJoin(session_id=started.session_id))
    )
    joined = await asyncio.wait_for(read_signal(signal), 15)
    assert joined.HasField("peer_joined"), joined  # the camera checked the log and joined
    notices: NoticesCall = stub.StreamNotices(relay_pb.StreamNoticesRequest())
    watched = Watched(agent, client, started.session_id, signal, notices)
    watched.tasks = [
        asyncio.ensure_future(_collect(signal, watched.heard)),
        asyncio.ensure_future(_collect(notices, watched.told)),
    ]
    await asyncio.sleep(0.5)  # the notice stream is open on the broker
    return watched


async def _unwatch(watched: Watched) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError):
        await relay_stub(watched.client).EndLiveView(
            relay_pb.EndLiveViewRequest(session_id=watched.session_id), timeout=10
        )
    watched.signal.cancel()
    watched.notices.cancel()
    for task in watched.tasks:
        task.cancel()
    await asyncio.gather(*watched.tasks, return_exceptions=True)
    await watched.agent.stop()
    await watched.client.close()


@dataclass
class Row:
    rpc: Rpc
    kind: PrincipalKind
    theirs: tuple[grpc.StatusCode, str]
    nowhere: tuple[grpc.StatusCode, str]

    def __str__(self) -> str:
        same = "same" if self.theirs == self.nowhere else f"DIFFERS: {self.nowhere[0].name}"
        answer = " ".join(self.theirs[1].split())
        answer = answer if len(answer) <= 60 else answer[:57] + "..."
        return f"{self.rpc!s:<34} {self.kind.value:<6} {self.theirs[0].name:<16} {same:<4} {answer}"


def _matrix(
    platform: Platform, world: World, theirs: dict[str, str], nowhere: dict[str, str]
) -> list[Row]:
    """Every method apps or cameras may call that takes ids, called by the intruder with
    the victim's ids and with ids that exist nowhere: each answer with the ids (and the
    caller's own tenant) masked."""
    intruder = world.intruder
    rows: list[Row] = []
    for rpc in RPCS:
        if not _has_id_field(rpc.method.input_type):
            continue
        for kind, profile in (
            (PrincipalKind.APP, intruder.app),
            (PrincipalKind.CAMERA, intruder.camera),
        ):
            if kind not in rpc.kinds:
                continue
            answers: list[tuple[grpc.StatusCode, str]] = []
            for turn, ids in enumerate((theirs, nowhere)):
                caller, own, timeout = profile, intruder.tenant, 10.0
                values: dict[str, str | int] = {
                    **_PLAUSIBLE,
                    "grantee_login": intruder.friend,
                    **ids,
                }
                if str(rpc) in _SELF_DESTRUCTIVE:
                    caller, own = world.doomed[turn]
                    timeout = 60.0
                    values["password"] = PASSWORD
                with _channel(platform, rpc.service, _identity_of(caller)) as channel:
                    requests = _requests(rpc, values, Caller.of(caller))
                    code, details = _call(channel, rpc, requests, timeout=timeout)
                for value in ids.values():
                    details = details.replace(value, "<id>")
                answers.append((code, details.replace(own, "<caller's tenant>")))
            rows.append(Row(rpc, kind, answers[0], answers[1]))
    return rows


def test_another_households_ids_answer_like_ids_that_exist_nowhere(
    platform: Platform, world: World
) -> None:
    victim = world.victim
    before = asyncio.run(_seen_by(victim))
    nowhere = {name: str(uuid.uuid4()) for name in _ID_FIELDS}
    nowhere["clip_id"] = f"iso-clip-{secrets.token_hex(4)}"

    async def run() -> tuple[list[Row], list[str]]:
        # The victim watches its camera meanwhile: its session's id is one of the ids, and
        # its camera's control stream and its app's streams are where a leak would land.
        watched = await _watch(victim)
        try:
            theirs = {
                "tenant_id": victim.tenant,
                "device_id": victim.device,
                "clip_id": victim.clip,
                "grant_id": victim.grant,
                "install_id": victim.install,
                "export_id": victim.export,
                "session_id": watched.session_id,
                "operator_access_id": world.operator_access,
                "cancellation_id": world.cancellation,
            }
            assert set(theirs) == set(nowhere)
            rows = await asyncio.to_thread(_matrix, platform, world, theirs, nowhere)
            # The session is still on, and whatever was sent to the victim has arrived.
            await relay_stub(watched.client).RenewTurnCredentials(
                relay_pb.RenewTurnCredentialsRequest(session_id=watched.session_id), timeout=10
            )
            await asyncio.sleep(1)
            camera = watched.agent
            received = [
                *(f"app heard {message}" for message in watched.heard),
                *(f"household told {notice}" for notice in watched.told),
                *(f"camera asked for {s}" for s in camera.requests if s != watched.session_id),
                *(f"camera closed {s}" for s in camera.closed_sessions),
                *(f"camera refused {s}: {why}" for s, why in camera.refusals.items()),
                *(f"camera failed: {error!r}" for error in camera.errors),
            ]
            if watched.session_id not in camera.requests:
                received.append("the camera never got the victim's own session")
            return rows, received
        finally:
            await _unwatch(watched)

    started = time.monotonic()
    rows, received = asyncio.run(run())
    reached = {str(r.rpc) for r in rows if r.theirs[0] is grpc.StatusCode.NOT_FOUND}
    streams = {str(r.rpc): r.theirs[0] for r in rows if r.rpc.method.client_streaming}
    methods = {str(r.rpc) for r in rows}
    print(
        f"\nisolation matrix: {len(rows)} calls of {len(methods)} methods, "
        f"{time.monotonic() - started:.1f} s; NOT_FOUND for another household's ids: "
        f"{len(reached)} methods"
    )
    for row in rows:
        print(row)
    leaks = [
        f"{r.rpc} as {r.kind.value}: theirs {r.theirs} vs nowhere {r.nowhere}"
        for r in rows
        if r.theirs != r.nowhere
    ]
    assert leaks == []
    assert len(reached) >= 30, "too few methods looked the ids up: the test would prove little"
    # Client streams: a clip stored under the other household's clip id (in the intruder's
    # own camera), a camera's answer to the victim's session ignored, a join refused.
    assert streams == {
        "clip_ingest.UploadClip": grpc.StatusCode.OK,
        "relay_broker.CameraControl": grpc.StatusCode.OK,
        "relay_broker.Signal": grpc.StatusCode.NOT_FOUND,
    }
    cancelled = next(r for r in rows if str(r.rpc) == "retention.CancelAccount")
    assert cancelled.theirs[0] is grpc.StatusCode.OK, cancelled  # each cancelled its own
    # Nothing reached the victim's live view: its app heard nothing more, its household
    # was told nothing, its camera got no other session and lost none.
    assert received == []
    # Nothing of the victim's changed, and its clip still plays as it was uploaded.
    assert asyncio.run(_seen_by(victim)) == before

    async def played() -> bytes:
        async with PrivacamClient(victim.app) as client:
            return (await download_clip(client, victim.device, victim.clip))[1]

    assert asyncio.run(played()) == CLIP
