"""IdentityEvents port on Kafka: domain events as `privacam.identity.v1.IdentityEvent`.

Each event goes to privacam.identity.v1 keyed by its tenant id and is awaited
until every in-sync replica has it. A CertificateRevoked is first written to
the compacted privacam.revocations.v1, which every replica of every service
replays and follows, so the identity is refused everywhere before the event
that announces it exists (a retry rewrites the same record: idempotent).

Revocation records: keyed `subject/<hex SHA-256 of the subject's SPIFFE URI>`
when all its certificates are revoked (records outlive a cancelled account and
must not name it); otherwise one record per serial keyed `serial/<hex>` (as
revocations.proto says), so revoking one certificate never overwrites a record
revoking all of the subject's. `covers_until` is the latest expiry of the
certificates the record covers (the domain event carries each one's not_after):
after it every one of them has expired and the record is moot.

GrantRevoked's reason (revoked or expired) has no field in events.proto yet, so
it does not reach the wire; an expiry is the only GrantRevoked without an actor.

Nothing secret or personal beyond ids leaves here: no login, password, PIN,
token or hash is in any domain event to begin with.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import assert_never

from google.protobuf.duration_pb2 import Duration
from prometheus_client import Counter

from privacam.accesslog.v1 import log_pb2
from privacam.accesslog.v1.events_pb2 import AccessEvent, AccessRecorded
from privacam.identity.v1 import events_pb2 as pb
from privacam.identity.v1 import identity_pb2, privacy_pb2
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.identity import PrincipalKind, spiffe_uri, subject_digest
from privacam_core.timestamps import to_timestamp
from services.common import topics
from services.common.kafka import EventProducer
from services.device_auth.domain import events
from services.device_auth.domain.records import Grant, GrantScope, SettingsView, Subject

PRODUCER = "device_auth"

EVENTS = Counter(
    "privacam_device_auth_events_total",
    "Identity events published, by kind: enrollments, renewals, revocations, grants, PIN "
    "changes and lockouts, account deletions (no tenant or device label).",
    ["event"],
)

_KINDS = {
    PrincipalKind.CAMERA: types_pb2.PRINCIPAL_KIND_CAMERA,
    PrincipalKind.APP: types_pb2.PRINCIPAL_KIND_APP,
    PrincipalKind.SERVICE: types_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.OPERATOR: types_pb2.PRINCIPAL_KIND_OPERATOR,
}
_REASONS = {
    events.RevocationReason.OWNER_REQUEST: identity_pb2.REVOCATION_REASON_OWNER_REQUEST,
    events.RevocationReason.ACCOUNT_DELETED: identity_pb2.REVOCATION_REASON_ACCOUNT_DELETED,
    events.RevocationReason.KEY_COMPROMISE: identity_pb2.REVOCATION_REASON_KEY_COMPROMISE,
    events.RevocationReason.SUPERSEDED: identity_pb2.REVOCATION_REASON_SUPERSEDED,
}
_PIN_CHANGES = {
    events.PinChange.SET: pb.PIN_CHANGE_SET,
    events.PinChange.CHANGED: pb.PIN_CHANGE_CHANGED,
    events.PinChange.CLEARED: pb.PIN_CHANGE_CLEARED,
}
_SCOPES = {
    GrantScope.LIVE: identity_pb2.GRANT_SCOPE_LIVE,
    GrantScope.CLIPS: identity_pb2.GRANT_SCOPE_CLIPS,
    GrantScope.TALK: identity_pb2.GRANT_SCOPE_TALK,
}


def watch_rule_pb(name: str) -> watch_pb2.WatchRule.ValueType:
    """A watch rule's domain name ("burst") as the proto's enum (WATCH_RULE_BURST)."""
    return watch_pb2.WatchRule.Value("WATCH_RULE_" + name.upper())


def watch_rule_name(value: watch_pb2.WatchRule.ValueType) -> str:
    """The proto's enum as the domain's name; an unknown value gives a name the domain
    refuses (INVALID_ARGUMENT naming it)."""
    try:
        return watch_pb2.WatchRule.Name(value)[len("WATCH_RULE_") :].lower()
    except ValueError:
        return str(value)


def watch_settings_pb(settings: SettingsView) -> identity_pb2.CameraWatchSettings | None:
    """The camera's watch tuning; None (the field unset) when it has none."""
    if not settings.watch_muted and not settings.watch_burst_count:
        return None
    return identity_pb2.CameraWatchSettings(
        muted_rules=[watch_rule_pb(name) for name in settings.watch_muted],
        burst_count=settings.watch_burst_count,
    )


def duration(delta: timedelta) -> Duration:
    value = Duration()
    value.FromTimedelta(delta)
    return value


def principal_pb(subject: Subject) -> types_pb2.Principal:
    return types_pb2.Principal(
        kind=_KINDS[subject.kind], tenant_id=subject.tenant_id or "", id=subject.name
    )


def grant_pb(grant: Grant) -> identity_pb2.Grant:
    message = identity_pb2.Grant(
        grant_id=grant.grant_id,
        device_id=grant.device_id,
        owner_tenant_id=grant.owner_tenant_id,
        grantee_tenant_id=grant.grantee_tenant_id,
        scopes=sorted(_SCOPES[scope] for scope in grant.scopes),
        created_at=to_timestamp(grant.created_at),
    )  # grantee_login stays empty: logins never reach events
    if grant.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(grant.expires_at))
    return message


def identity_event_pb(event: events.IdentityEvent) -> pb.IdentityEvent:
    """The protobuf envelope of a domain event."""
    message = pb.IdentityEvent(
        metadata=types_pb2.EventMetadata(
            event_id=event.event_id,
            occurred_at=to_timestamp(event.occurred_at),
            tenant_id=event.tenant_id,
            producer=PRODUCER,
        )
    )
    if event.actor is not None:
        message.metadata.actor.CopyFrom(principal_pb(event.actor))
    body = event.body
    match body:
        case events.AccountRegistered():
            message.account_registered.SetInParent()
        case events.AppInstallEnrolled():
            message.app_install_enrolled.CopyFrom(
                pb.AppInstallEnrolled(
                    install_id=body.install_id,
                    serial_number=body.serial_number,
                    not_after=to_timestamp(body.not_after),
                )
            )
        case events.CameraEnrolled():
            message.camera_enrolled.CopyFrom(
                pb.CameraEnrolled(
                    device_id=body.device_id,
                    serial_number=body.serial_number,
                    not_after=to_timestamp(body.not_after),
                )
            )
        case events.CertificateRenewed():
            message.certificate_renewed.CopyFrom(
                pb.CertificateRenewed(
                    subject=principal_pb(body.subject),
                    serial_number=body.serial_number,
                    not_after=to_timestamp(body.not_after),
                )
            )
        case events.CertificateRevoked():
            message.certificate_revoked.CopyFrom(
                pb.CertificateRevoked(
                    subject=principal_pb(body.subject),
                    serial_numbers=list(body.serial_numbers),
                    all_certificates=body.all_certificates,
                    reason=_REASONS[body.reason],
                )
            )
        case events.CameraSettingsChanged():
            message.camera_settings_changed.CopyFrom(
                pb.CameraSettingsChanged(
                    device_id=body.device_id,
                    settings=identity_pb2.CameraSettings(
                        activity_alerts_enabled=body.settings.activity_alerts_enabled,
                        retention_days=body.settings.retention_days,
                        pin_set=body.settings.pin_set,
                        label=body.settings.label,
                        privacy=privacy_pb2.SignedPrivacyStatement.FromString(body.settings.privacy)
                        if body.settings.privacy
                        else None,
                        watch=watch_settings_pb(body.settings),
                    ),
                )
            )
        case events.PrivacyModeChanged():
            message.privacy_mode_changed.CopyFrom(
                pb.PrivacyModeChanged(
                    device_id=body.device_id,
                    statement=privacy_pb2.SignedPrivacyStatement.FromString(body.statement),
                    household_tenant_ids=list(body.household_tenant_ids),
                )
            )
        case events.GrantCreated():
            message.grant_created.CopyFrom(pb.GrantCreated(grant=grant_pb(body.grant)))
        case events.GrantRevoked():
            message.grant_revoked.CopyFrom(
                pb.GrantRevoked(
                    grant_id=body.grant_id,
                    device_id=body.device_id,
                    grantee_tenant_id=body.grantee_tenant_id,
                    reason=(
                        pb.GRANT_END_REASON_EXPIRED
                        if body.reason is events.GrantEndReason.EXPIRED
                        else pb.GRANT_END_REASON_REVOKED
                    ),
                )
            )
        case events.PinChanged():
            message.pin_changed.CopyFrom(
                pb.PinChanged(device_id=body.device_id, change=_PIN_CHANGES[body.change])
            )
        case events.PinLockedOut():
            locked = pb.PinLockedOut(
                device_id=body.device_id,
                failed_attempts=body.failed_attempts,
                lockout=duration(body.lockout),
            )
            if body.last_attempt_by is not None:
                locked.last_attempt_by.CopyFrom(principal_pb(body.last_attempt_by))
            message.pin_locked_out.CopyFrom(locked)
        case events.AccountDeleted():
            message.account_deleted.CopyFrom(
                pb.AccountDeleted(cancellation_id=body.cancellation_id)
            )
        case _:
            assert_never(body)
    return message


def revocation_records(
    revoked: events.CertificateRevoked, trust_domain: str, revoked_at: datetime
) -> list[tuple[str, RevocationRecord]]:
    """(record key, record) pairs to write on privacam.revocations.v1."""
    subject = revoked.subject
    uri = spiffe_uri(trust_domain, subject.kind, subject.name, subject.tenant_id)
    digest = subject_digest(uri)
    serials = [serial.lower() for serial in revoked.serial_numbers]

    def record(serial_numbers: list[str], expiries: tuple[datetime, ...]) -> RevocationRecord:
        # No certificate at all: nothing to cover beyond the revocation itself.
        return RevocationRecord(
            subject_digest=digest,
            serial_numbers=serial_numbers,
            all_certificates=revoked.all_certificates,
            revoked_at=to_timestamp(revoked_at),
            covers_until=to_timestamp(max(expiries, default=revoked_at)),
        )

    if revoked.all_certificates:
        return [(f"subject/{digest.hex()}", record(serials, revoked.not_after))]
    return [
        (f"serial/{serial}", record([serial], (not_after,)))
        for serial, not_after in zip(serials, revoked.not_after, strict=True)
    ]


def access_record(event: events.IdentityEvent) -> log_pb2.AccessRecord | None:
    """The household's access-log entry for a change to its camera (sharing, PIN,
    settings), or None for events that are not an access to its data."""
    body = event.body
    match body:
        case events.GrantCreated():
            resource = log_pb2.Resource(
                kind=log_pb2.RESOURCE_KIND_GRANT,
                device_id=body.grant.device_id,
                grant_id=body.grant.grant_id,
            )
            purpose = types_pb2.ACCESS_PURPOSE_SHARING_CHANGE
        case events.GrantRevoked():
            resource = log_pb2.Resource(
                kind=log_pb2.RESOURCE_KIND_GRANT, device_id=body.device_id, grant_id=body.grant_id
            )
            purpose = types_pb2.ACCESS_PURPOSE_SHARING_CHANGE
        case events.PinChanged():
            resource = log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CAMERA, device_id=body.device_id)
            purpose = types_pb2.ACCESS_PURPOSE_PIN_CHANGE
        case events.CameraSettingsChanged():
            resource = log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CAMERA, device_id=body.device_id)
            purpose = types_pb2.ACCESS_PURPOSE_SETTINGS_CHANGE
        case _:
            return None
    # A change nobody asked for (a grant running out) is the platform's own doing.
    actor = event.actor or Subject(PrincipalKind.SERVICE, None, PRODUCER)
    return log_pb2.AccessRecord(
        access_id=event.event_id,  # a retried publish is the same entry, not a second one
        tenant_id=event.tenant_id,
        principal=principal_pb(actor),
        resource=resource,
        purpose=purpose,
        service=PRODUCER,
        occurred_at=to_timestamp(event.occurred_at),
    )


class KafkaIdentityEvents:
    """IdentityEvents port: privacam.identity.v1 (and privacam.revocations.v1)."""

    def __init__(self, producer: EventProducer, trust_domain: str) -> None:
        self._producer = producer
        self._trust_domain = trust_domain

    async def publish(self, event: events.IdentityEvent) -> None:
        message = identity_event_pb(event)  # fails before anything is written
        if isinstance(event.body, events.CertificateRevoked):
            records = revocation_records(event.body, self._trust_domain, event.occurred_at)
            for key, record in records:
                await self._producer.send_raw(
                    topics.REVOCATIONS, key=key.encode(), value=topics.REVOCATIONS.encode(record)
                )
        await self._producer.publish(topics.IDENTITY, event.tenant_id, message)
        EVENTS.labels(message.WhichOneof("event") or "unknown").inc()
        access = access_record(event)
        if access is not None:  # into the household's log, through the access topic
            logged = AccessEvent(
                metadata=types_pb2.EventMetadata(
                    event_id=event.event_id,
                    occurred_at=access.occurred_at,
                    tenant_id=event.tenant_id,
                    producer=PRODUCER,
                ),
                access_recorded=AccessRecorded(record=access),
            )
            await self._producer.publish(topics.ACCESS, event.tenant_id, logged)
