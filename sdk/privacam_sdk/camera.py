"""The camera's side of log before view: video goes only to a viewer the household's log
already names.

The broker tells a camera "someone wants to watch" with a SessionRequested. Everything
in it could come from a compromised broker pod or from whoever can write the broker's
Redis, so the camera believes none of it until two checks pass:

1. **The request is logged.** It carries the access log's receipt of the session's
   LIVE_SESSION record: a signed tree head and an inclusion proof. The camera verifies
   the head's signature against the log keys it pinned at pairing (``Profile.log_keys``),
   that the head and the record are fresh (``max_age``), that the record is in the tree,
   and that it names this session, this camera, the purpose live view and an app as the
   viewer. A session id it has already served is refused (a replayed request).
2. **The app that signals is the logged viewer.** Before answering, the camera waits for
   the app's signed DTLS fingerprint (the app's certificate key over the session id and
   fingerprint, domain-separated from the camera's own signature). The certificate must
   chain to the pinned CA and name exactly the app the log record names, and the signed
   fingerprint must be the offer's. DTLS then proves the peer holds that certificate, so
   neither a forger nor the broker can take the viewer's place.

Talk-back works the same way (``check_talk``): a TalkRequested carries the log's receipt of
a TALK_BACK start entry, which must name this camera, this session and the session's
logged viewer, be fresh, and be used once; only then does the camera play the audio the
session's peer connection brings (privacam_sdk.talk_back).

Either check failing raises :class:`SessionRefused` with a reason for people; the camera
declines the session with it (``SessionAnswer.decline_reason``) and streams nothing. The
byte layouts and the contract for firmware teams are in docs/camera-protocol.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from privacam.accesslog.v1 import log_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.types.v1 import types_pb2
from privacam_core.receipts import (
    DEFAULT_CLOCK_SKEW,
    ReceiptError,
    VerifiedAccess,
    verify_receipt,
)
from privacam_sdk.live_view import FingerprintRejected, Signer, verify_dtls_fingerprint

MAX_RECEIPT_AGE = timedelta(minutes=2)
"""How old a session request's receipt may be: the broker logs the session and asks the
camera within one call, so anything older is a replay or a stalled broker."""
REMEMBERED_SESSIONS = 1024
MAX_TALK = timedelta(hours=1)
"""The longest a camera plays one talk-back, whatever the request's expires_at says (the
platform's own limit is at most this)."""


class SessionRefused(Exception):
    """The camera will not serve this session; the message says why, for people."""


@dataclass(frozen=True, slots=True)
class LoggedViewer:
    """Who the log says is watching, and which entry says so."""

    session_id: str
    tenant_id: str
    app_id: str
    access_id: str
    leaf_index: int


@dataclass(frozen=True, slots=True)
class LoggedTalk:
    """A talk-back the log holds: whose session, which entry, until when to play."""

    session_id: str
    access_id: str
    expires_at: datetime


class SessionGate:
    """One camera's checks of the sessions it is asked to serve (see the module docstring).

    ``tenant_id`` and ``device_id`` are the camera's own, from its certificate;
    ``log_keys`` are the access-log keys it pinned; ``trusted_ca_pem`` is the CA its
    profile pins (app certificates chain to it).
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        device_id: str,
        log_keys: Mapping[str, Ed25519PublicKey],
        trusted_ca_pem: bytes,
        trust_domain: str,
        max_age: timedelta = MAX_RECEIPT_AGE,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        self._tenant_id = tenant_id
        self._device_id = device_id
        self._log_keys = dict(log_keys)
        self._ca_pem = trusted_ca_pem
        self._trust_domain = trust_domain
        self._max_age = max_age
        self._skew = clock_skew
        # Session ids already accepted, oldest first: a request is only ever served once.
        self._served: OrderedDict[str, datetime] = OrderedDict()
        # Talk-back entries already honoured (their access ids), oldest first.
        self._talks: OrderedDict[str, datetime] = OrderedDict()

    def check_request(self, request: pb.SessionRequested, now: datetime) -> LoggedViewer:
        """The logged viewer of this request, or SessionRefused."""
        if not request.HasField("receipt"):
            raise SessionRefused("the request carries no access-log receipt: it was not logged")
        access, record = self._verified(request.receipt, now, "access-log receipt")
        if (
            access.resource_kind != log_pb2.RESOURCE_KIND_LIVE_SESSION
            or access.purpose != types_pb2.ACCESS_PURPOSE_LIVE_VIEW
        ):
            raise SessionRefused("the logged access is not a live view")
        if access.device_id != self._device_id:
            raise SessionRefused("the logged live view is of another camera")
        if record.resource.session_id != request.session_id:
            raise SessionRefused("the logged live view is another session")
        if access.principal.kind != types_pb2.PRINCIPAL_KIND_APP:
            raise SessionRefused("the logged viewer is not an app")
        self._once(self._served, request.session_id, now, "this session was already served")
        return LoggedViewer(
            session_id=request.session_id,
            tenant_id=access.principal.tenant_id,
            app_id=access.principal.id,
            access_id=access.access_id,
            leaf_index=access.leaf_index,
        )

    def check_talk(
        self, request: pb.TalkRequested, viewer: LoggedViewer, now: datetime
    ) -> LoggedTalk:
        """The logged talk-back of ``viewer``'s session, or SessionRefused: the receipt must
        verify like a session's and its record be a talk-back start by that same app."""
        if request.session_id != viewer.session_id:
            raise SessionRefused("the talk-back request is for another session")
        if not request.HasField("receipt"):
            raise SessionRefused("the talk-back request carries no access-log receipt")
        access, record = self._verified(request.receipt, now, "talk-back's receipt")
        if (
            access.resource_kind != log_pb2.RESOURCE_KIND_TALK_BACK
            or access.purpose != types_pb2.ACCESS_PURPOSE_TALK_BACK
        ):
            raise SessionRefused("the logged access is not a talk-back")
        if record.HasField("duration"):
            raise SessionRefused("the logged talk-back is an end entry, not a start")
        if access.device_id != self._device_id:
            raise SessionRefused("the logged talk-back is through another camera")
        if record.resource.session_id != viewer.session_id:
            raise SessionRefused("the logged talk-back is in another session")
        speaker = access.principal
        if (speaker.kind, speaker.tenant_id, speaker.id) != (
            types_pb2.PRINCIPAL_KIND_APP,
            viewer.tenant_id,
            viewer.app_id,
        ):
            raise SessionRefused("the logged speaker is not this session's logged viewer")
        self._once(self._talks, access.access_id, now, "this talk-back was already honoured")
        expires = (
            request.expires_at.ToDatetime(tzinfo=UTC)
            if request.HasField("expires_at")
            else now + self._max_age
        )
        return LoggedTalk(viewer.session_id, access.access_id, min(expires, now + MAX_TALK))

    def check_viewer(
        self,
        viewer: LoggedViewer,
        signed: pb.SignedDtlsFingerprint,
        offer_sdp: str,
        now: datetime,
    ) -> None:
        """SessionRefused unless the offer's fingerprint is signed by the logged app."""
        logged = f"spiffe://{self._trust_domain}/tenant/{viewer.tenant_id}/app/{viewer.app_id}"
        try:
            verify_dtls_fingerprint(
                signed,
                signer=Signer.APP,
                session_id=viewer.session_id,
                names_expected=logged.__eq__,
                sdp=offer_sdp,
                trusted_ca_pem=self._ca_pem,
                now=now,
            )
        except FingerprintRejected as error:
            raise SessionRefused(f"the app signaling is not the logged viewer: {error}") from None

    def _verified(
        self, receipt: log_pb2.Receipt, now: datetime, what: str
    ) -> tuple[VerifiedAccess, log_pb2.AccessRecord]:
        """The receipt's access, checked against the pinned log keys, and its record."""
        if not self._log_keys:
            raise SessionRefused("no access-log keys are pinned: nothing can be verified")
        try:
            access = verify_receipt(
                receipt,
                self._log_keys,
                tenant_id=self._tenant_id,
                now=now,
                max_age=self._max_age,
                clock_skew=self._skew,
            )
            record = log_pb2.AccessRecord.FromString(receipt.record)
        except ReceiptError as error:
            raise SessionRefused(f"the {what} is refused: {error}") from None
        except DecodeError:  # verify_receipt parsed it already; kept for the type checker
            raise SessionRefused("the logged record does not parse") from None
        return access, record

    def _once(self, seen: OrderedDict[str, datetime], key: str, now: datetime, why: str) -> None:
        """Refuse a key honoured before (while a receipt for it could still pass), and
        remember this one; memory is bounded by age and by REMEMBERED_SESSIONS."""
        cutoff = now - self._max_age - self._skew
        while seen and next(iter(seen.values())) < cutoff:
            seen.popitem(last=False)
        if key in seen:
            raise SessionRefused(f"{why}: the request is a replay")
        seen[key] = now
        while len(seen) > REMEMBERED_SESSIONS:
            seen.popitem(last=False)
