"""Privacy mode, device_auth's part: check the owner's signed statement, log it, keep it.

The owner's app signs a PrivacyStatement with its certificate key and sends it here.
device_auth checks its shape, that the caller owns the camera and is the install that
signed it with the key of the certificate it calls with, and that it is newer than the
camera's current one. Then the household's log records the change (nothing changes when
the log is out of reach), the statement becomes the camera's CameraSettings.privacy
(services refuse live view and clip uploads by it) and PrivacyModeChanged carries it to
relay_broker, which forwards it to the camera and tells the household's apps.

None of this is what makes privacy hold: the camera applies a statement only if an owner
key it pinned at pairing signed it (sdk/privacam_sdk/privacy.py), so a compromised
device_auth can refuse or delay a change but cannot forge one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from privacam.identity.v1 import privacy_pb2
from privacam_core import privacy
from privacam_core.identity import PrincipalKind
from services.common.clock import Clock
from services.device_auth.domain import validation
from services.device_auth.domain.errors import Forbidden, InvalidInput, PreconditionFailed
from services.device_auth.domain.ports import PrivacyLog
from services.device_auth.domain.records import SettingsView, Subject
from services.device_auth.domain.service import DeviceAuth


def issued_at(statement: bytes) -> datetime | None:
    """When a stored statement was made (None for none)."""
    if not statement:
        return None
    signed = privacy_pb2.SignedPrivacyStatement.FromString(statement)
    return privacy.parse(signed.statement).issued_at.ToDatetime(tzinfo=UTC)


class PrivacyModes:
    def __init__(self, auth: DeviceAuth, log: PrivacyLog, clock: Clock) -> None:
        self._auth = auth
        self._log = log
        self._clock = clock

    async def set(
        self,
        tenant_id: str,
        install_id: str,
        signed: privacy_pb2.SignedPrivacyStatement,
        caller_key: ec.EllipticCurvePublicKey | None,
    ) -> SettingsView:
        """SetPrivacyMode for the calling app install; ``caller_key`` is the key of the
        certificate it called with."""
        try:
            statement = privacy.parse(signed.statement)
            privacy.mode_of(statement)
        except privacy.StatementError as error:
            raise InvalidInput(str(error)) from None
        device_id = validation.identifier(statement.device_id, "statement.device_id")
        if statement.tenant_id != tenant_id or statement.signer_install_id != install_id:
            raise Forbidden(
                "the privacy statement must name the calling app install and its household "
                "as its signer"
            )
        if caller_key is None or not privacy.verify_signature(signed, caller_key):
            raise Forbidden(
                "the privacy statement's signature does not verify with the calling app's "
                "certificate key"
            )
        made = statement.issued_at.ToDatetime(tzinfo=UTC)
        if abs(made - self._clock.now()) > privacy.MAX_FUTURE:
            raise InvalidInput(
                "statement issued_at must be within 5 minutes of now: check the phone's clock"
            )
        camera, household = await self._auth.privacy_target(tenant_id, device_id)

        def still_newer(current: bytes) -> None:
            before = issued_at(current)
            if before is not None and made <= before:
                raise PreconditionFailed(
                    "the camera already has a privacy statement issued at or after this one"
                )

        still_newer(camera.privacy)  # before logging: a stale statement logs nothing
        data = signed.SerializeToString(deterministic=True)
        await self._log.record_privacy_change(
            tenant_id, device_id, install_id, hashlib.sha256(bytes(signed.statement)).digest()
        )
        return await self._auth.set_privacy(
            camera,
            data,
            still_newer,
            household,
            Subject(PrincipalKind.APP, tenant_id, install_id),
        )
