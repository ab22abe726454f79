"""Verification of access-log receipts before a data key is released for viewing.

The tamper-evident access log (issue #8) signs tree heads and proves that an
access was appended before it happens. Until that log is deployed, there is
nothing a receipt could be checked against, so every viewing unwrap is
refused: failing closed keeps "an unlogged access cannot happen" true from
the first day, at the cost of playback waiting for the log.
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.key_manager.domain.keyring import KeyContext
from services.key_manager.domain.service import AccessProof, Purpose


class AccessLogNotDeployed:
    async def verify(self, receipt: object, context: KeyContext, purpose: Purpose) -> AccessProof:
        raise FailedPrecondition(
            "viewing needs a receipt from the access log, and no access log is configured; "
            "the key stays wrapped"
        )
