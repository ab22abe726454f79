"""Isolation: every RPC of every service, called by every kind of principal on resources it
did not earn. The exact status, and no answer that tells whether a resource exists.

- Kinds of caller a method does not admit are PERMISSION_DENIED, for every method.
- Certificates that are no identity (none, another CA's, expired) never get a call
  through; a revoked one is UNAUTHENTICATED at every service.
- A real household's ids (its tenant, camera, clip, grant, install, export) sent by another
  household, in every id field of every request, client streams' first messages included,
  get the same status, message and content as ids that exist nowhere, and change nothing
  of that household's: the seed incidents' "strangers' stills" start with an answer that
  differs.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.identity.v1 import identity_pb2
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam.retention.v1 import retention_service_pb2 as retention_pb
from privacam.retention.v1 import retention_service_pb2_grpc as retention_grpc
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from services.common import topics
from services.common.identity import PrincipalKind, principal_from_pem, spiffe_uri, subject_digest
from services.common.pki import certificate_pem, issue_leaf, new_private_key, private_key_pem
from tests.harness import SERVICES, Platform, kafka_options, mtls_channel, state_signing
from tests.media import make_mp4
from tests.pki_helpers import Identity
from tests.rpcs import Rpc, all_rpcs

PASSWORD = "a long enough passphrase"
KINDS = (PrincipalKind.APP, PrincipalKind.CAMERA, PrincipalKind.SERVICE, PrincipalKind.OPERATOR)


RPCS = all_rpcs()


def _channel(platform: Platform, service: str, identity: Identity) -> grpc.Channel:
    ca, cert, key = identity.credentials()
    return grpc.secure_channel(
        platform.endpoints()[service], grpc.ssl_channel_credentials(ca, key, cert)
    )


def _call(channel: grpc.Channel, rpc: Rpc, request: Message) -> tuple[grpc.StatusCode, str]:
    """The status and, for OK, the first response in text form (else the error details)."""
    response_class = GetMessageClass(rpc.method.output_type)
    method = rpc.method
    serialize, parse = type(request).SerializeToString, response_class.FromString
    response: Any = None
    try:
        if method.client_streaming:
            call: Any = (
                channel.stream_stream if method.server_streaming else channel.stream_unary
            )(rpc.path, serialize, parse)
            response = call(iter([request]), timeout=5)
            if method.server_streaming:
                response = next(iter(response))
        elif method.server_streaming:
            stream = channel.unary_stream(rpc.path, serialize, parse)(request, timeout=5)
            response = next(iter(stream))
        else:
            response = channel.unary_unary(rpc.path, serialize, parse)(request, timeout=5)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    except StopIteration:
        return grpc.StatusCode.OK, ""
    return grpc.StatusCode.OK, str(response)


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


CLIP = make_mp4(6.0, seed=23)


async def _household(platform: Platform, home: Path) -> Household:
    enrollment = platform.enrollment(home)
    suffix = secrets.token_hex(4)
    app, tenant = await enrollment.register_account(f"iso-{suffix}", f"iso-{suffix}", PASSWORD)
    await enrollment.register_account(f"fr-{suffix}", f"friend-{suffix}", PASSWORD)
    async with PrivacamClient(app) as client:
        token = await client.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
        camera, device = await enrollment.enroll_camera(
            f"iso-cam-{suffix}", token.claim_token, f"SN-{suffix}"
        )
        grant = await client.device_auth().CreateGrant(
            identity_pb.CreateGrantRequest(
                device_id=device,
                grantee_login=f"friend-{suffix}",
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
        app, camera, tenant, device, install, grant.grant.grant_id, clip, export.export.export_id
    )


_ID_FIELDS = ("tenant_id", "device_id", "clip_id", "grant_id", "install_id", "export_id")


def _fill(descriptor: Descriptor, message: Message, ids: dict[str, str], depth: int = 0) -> None:
    """Every id field (at any depth) set to the given ids; other fields plausible. Of a
    oneof only the first field is set: a client stream's first message (metadata, hello,
    join) carries its ids there."""
    for field in descriptor.fields:
        name = field.name
        oneof = field.containing_oneof
        if oneof is not None and oneof.fields[0] is not field:
            continue
        if field.message_type is not None:
            if depth < 2 and not field.is_repeated:
                child = getattr(message, name)
                _fill(field.message_type, child, ids, depth + 1)
        elif field.is_repeated:
            if name.removesuffix("s") + "_id" in ids or name.endswith("_ids"):
                key = name.removesuffix("s")
                if key in ids:
                    getattr(message, name).append(ids[key])
        elif name in ids:
            setattr(message, name, ids[name])
        elif field.enum_type is not None and len(field.enum_type.values) > 1:
            setattr(message, name, field.enum_type.values[1].number)
        elif name == "pin":
            setattr(message, name, "1234")
        elif name in ("page_size",):
            setattr(message, name, 10)


def _has_id_field(descriptor: Descriptor, depth: int = 0) -> bool:
    return any(
        field.name in _ID_FIELDS
        or field.name.removesuffix("s") in _ID_FIELDS
        or (field.message_type is not None and depth < 2 and _has_id_field(field.message_type))
        for field in descriptor.fields
    )


@pytest.fixture(scope="module")
def households(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Household, Household]:
    home = tmp_path_factory.mktemp("isolation")
    victim = asyncio.run(_household(platform, home / "victim"))
    intruder = asyncio.run(_household(platform, home / "intruder"))
    return victim, intruder


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
    ]


def test_another_households_ids_answer_like_ids_that_exist_nowhere(
    platform: Platform, households: tuple[Household, Household]
) -> None:
    victim, intruder = households
    theirs = {
        "tenant_id": victim.tenant,
        "device_id": victim.device,
        "clip_id": victim.clip,
        "grant_id": victim.grant,
        "install_id": victim.install,
        "export_id": victim.export,
    }
    nowhere = {name: str(uuid.uuid4()) for name in _ID_FIELDS}
    nowhere["clip_id"] = f"iso-clip-{secrets.token_hex(4)}"
    before = asyncio.run(_seen_by(victim))
    leaks: list[str] = []
    reached: set[str] = set()
    streams: set[str] = set()
    for rpc in RPCS:
        for kind, profile in (
            (PrincipalKind.APP, intruder.app),
            (PrincipalKind.CAMERA, intruder.camera),
        ):
            if kind not in rpc.kinds:
                continue
            request_class = GetMessageClass(rpc.method.input_type)
            if not _has_id_field(rpc.method.input_type):
                continue
            answers = []
            for ids in (theirs, nowhere):
                request = request_class()
                _fill(rpc.method.input_type, request, ids)
                with _channel(platform, rpc.service, _identity_of(profile)) as channel:
                    code, details = _call(channel, rpc, request)
                for value in ids.values():
                    details = details.replace(value, "<id>")
                answers.append((code, details))
            if answers[0] != answers[1]:
                leaks.append(f"{rpc} as {kind.value}: theirs {answers[0]} vs nowhere {answers[1]}")
            if answers[0][0] is grpc.StatusCode.NOT_FOUND:
                reached.add(str(rpc))
            if rpc.method.client_streaming:
                streams.add(str(rpc))
    print(f"NOT_FOUND for another household's ids: {len(reached)} methods: {sorted(reached)}")
    assert leaks == []
    assert len(reached) >= 20, "too few methods looked the ids up: the test would prove little"
    assert "clip_ingest.UploadClip" in streams
    # Nothing of the victim's changed, and its clip still plays as it was uploaded.
    assert asyncio.run(_seen_by(victim)) == before

    async def played() -> bytes:
        async with PrivacamClient(victim.app) as client:
            return (await download_clip(client, victim.device, victim.clip))[1]

    assert asyncio.run(played()) == CLIP
