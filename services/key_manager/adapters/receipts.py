"""Log before decrypt: a data key is released only against a receipt that the access is
already in the household's tamper-evident log.

A receipt is a signed tree head of the tenant's log plus an inclusion proof of the
access record (core/privacam_core/receipts.py checks both, and that the head and the
access itself are recent). Here the record must also be this very access: same tenant,
camera, clip (or export) and purpose, logged by the service now asking for the key.
That it was never presented before is settled by the key state log, on every replica
(StateLog.claim_access). Until an access log is configured there is nothing a receipt
could be checked against, so every unwrap is refused: "an unlogged access cannot
happen" holds from the first day, at the cost of playback waiting for the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from privacam.accesslog.v1 import log_pb2
from privacam_core.receipts import (
    DEFAULT_CLOCK_SKEW,
    ReceiptError,
    StaleReceipt,
    verify_receipt,
)
from services.common.clock import Clock
from services.common.errors import FailedPrecondition
from services.key_manager.adapters.events import PURPOSES
from services.key_manager.domain.keyring import KeyContext
from services.key_manager.domain.service import AccessProof, Purpose, ReceiptRefused


class AccessLogNotDeployed:
    async def verify(
        self, receipt: object, context: KeyContext, purpose: Purpose, caller: str
    ) -> AccessProof:
        raise FailedPrecondition(
            "viewing needs a receipt from the access log, and no access log is configured; "
            "the key stays wrapped"
        )


def load_log_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """{"<key id>": "<PEM public key>", ...}: the access log's signing keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, pem in json.loads(path.read_text()).items():
        key = load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: key {key_id!r} is not an Ed25519 public key")
        keys[key_id] = key
    return keys


def service_id(name: str) -> str:
    """A service as its certificate names it (``service/clip-ingest``) from its name as
    the access log records it (``clip_ingest``, the package's NAME): the access log's
    Append makes the same comparison."""
    return name.replace("_", "-")


class SignedLogReceipts:
    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        clock: Clock,
        max_age: timedelta = timedelta(minutes=5),
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        self._keys = dict(public_keys)
        self._clock = clock
        self._max_age = max_age
        self._skew = clock_skew

    async def verify(
        self, receipt: object, context: KeyContext, purpose: Purpose, caller: str
    ) -> AccessProof:
        if not isinstance(receipt, log_pb2.Receipt):
            raise ReceiptRefused(
                "missing", "a receipt from the access log is required to release a key"
            )
        try:
            access = verify_receipt(
                receipt,
                self._keys,
                tenant_id=context.tenant_id,
                now=self._clock.now(),
                max_age=self._max_age,
                clock_skew=self._skew,
            )
        except StaleReceipt as error:
            raise ReceiptRefused("stale", str(error)) from None
        except ReceiptError as error:
            raise ReceiptRefused("invalid", str(error)) from None
        # An export's own key is bound to the export (no camera); a clip read into an export
        # is bound to its camera and clip like any playback.
        export_key = purpose is Purpose.DATA_EXPORT and not context.device_id
        resource = access.export_id if export_key else access.clip_id
        if (access.device_id, resource, access.purpose) != (
            context.device_id,
            context.clip_id,
            PURPOSES[purpose],
        ):
            raise ReceiptRefused("other_access", "it records another access")
        # Whoever holds one service's certificate must not spend receipts another logged.
        if not access.service or service_id(access.service) != caller:
            raise ReceiptRefused(
                "wrong_service", "the access was logged by another service than the caller"
            )
        return AccessProof(access.access_id, access.leaf_index, access.occurred_at)
