"""Log before decrypt: a data key is released only against a receipt that the access is
already in the household's tamper-evident log.

A receipt is a signed tree head of the tenant's log plus an inclusion proof of the
access record (services/common/receipts.py checks both). Here the record must also be
this very access: same tenant, camera, clip (or export) and purpose, signed recently,
and not presented before. Until an access log is configured there is nothing a receipt
could be checked against, so every unwrap is refused: "an unlogged access cannot
happen" holds from the first day, at the cost of playback waiting for the log.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from privacam.accesslog.v1 import log_pb2
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, PermissionDenied
from services.common.receipts import ReceiptError, verify_receipt
from services.key_manager.adapters.events import PURPOSES
from services.key_manager.domain.keyring import KeyContext
from services.key_manager.domain.service import AccessProof, Purpose


class AccessLogNotDeployed:
    async def verify(self, receipt: object, context: KeyContext, purpose: Purpose) -> AccessProof:
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


class SignedLogReceipts:
    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        clock: Clock,
        max_age: timedelta = timedelta(minutes=5),
    ) -> None:
        self._keys = dict(public_keys)
        self._clock = clock
        self._max_age = max_age
        # access id -> when it was used; a receipt older than max_age is refused anyway,
        # so remembering max_age's worth of ids stops every replay to this replica.
        self._used: OrderedDict[str, datetime] = OrderedDict()

    async def verify(self, receipt: object, context: KeyContext, purpose: Purpose) -> AccessProof:
        if not isinstance(receipt, log_pb2.Receipt):
            raise PermissionDenied("a receipt from the access log is required to release a key")
        now = self._clock.now()
        try:
            access = verify_receipt(
                receipt, self._keys, tenant_id=context.tenant_id, now=now, max_age=self._max_age
            )
        except ReceiptError as error:
            raise PermissionDenied(f"receipt refused: {error}") from None
        # An export's own key is bound to the export (no camera); a clip read into an export
        # is bound to its camera and clip like any playback.
        export_key = purpose is Purpose.DATA_EXPORT and not context.device_id
        resource = access.export_id if export_key else access.clip_id
        if (access.device_id, resource, access.purpose) != (
            context.device_id,
            context.clip_id,
            PURPOSES[purpose],
        ):
            raise PermissionDenied("receipt refused: it records another access")
        self._forget_before(now - self._max_age)
        if access.access_id in self._used:
            raise PermissionDenied("receipt refused: it was already used")
        self._used[access.access_id] = now
        return AccessProof(access.access_id, access.leaf_index)

    def _forget_before(self, cutoff: datetime) -> None:
        while self._used and next(iter(self._used.values())) < cutoff:
            self._used.popitem(last=False)
