"""The authorization hook every RPC passes through.

Each service declares, for every RPC it serves, which kinds of principal may
call it. A method without a declared policy is refused (fail closed), and the
runtime refuses to start a service whose servicers have undeclared methods.
Resource-level checks (this tenant's camera, a grant) belong to the domain,
which reads the caller from `current_principal()`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Protocol

from services.common.errors import PermissionDenied, Unauthenticated
from services.common.identity import Principal, PrincipalKind

ENROLLMENT_PORT_ONLY: frozenset[PrincipalKind] = frozenset()
"""No certificate on the mTLS port: served only on the enrollment port (server-only TLS)."""
CAMERA = frozenset({PrincipalKind.CAMERA})
APP = frozenset({PrincipalKind.APP})
SERVICE = frozenset({PrincipalKind.SERVICE})
OPERATOR = frozenset({PrincipalKind.OPERATOR})
SERVICE_OR_OPERATOR = SERVICE | OPERATOR

MethodPolicies = Mapping[str, frozenset[PrincipalKind]]
"""Full gRPC method name (`/package.Service/Method`) to the principal kinds allowed."""

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("privacam_principal")


def current_principal() -> Principal:
    """The authenticated caller of the RPC being handled."""
    try:
        return _current.get()
    except LookupError:
        raise Unauthenticated("no authenticated caller") from None


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


def reset_current_principal(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)


class RevocationList(Protocol):
    def is_revoked(self, principal: Principal) -> bool:
        """True once the principal's certificate, or the principal itself, was revoked."""
        ...


class NoRevocations:
    """Until device_auth's revocation events are consumed, nothing is revoked."""

    def is_revoked(self, principal: Principal) -> bool:
        return False


class Authorizer:
    def __init__(self, policies: MethodPolicies, revocations: RevocationList) -> None:
        self._policies = policies
        self._revocations = revocations

    def authorize(self, principal: Principal, method: str) -> None:
        allowed = self._policies.get(method)
        if allowed is None:
            raise PermissionDenied("this method is not open to any caller")
        if self._revocations.is_revoked(principal):
            raise Unauthenticated("certificate has been revoked; enroll again")
        if principal.kind not in allowed:
            kinds = ", ".join(sorted(kind.value for kind in allowed))
            raise PermissionDenied(f"only {kinds} identities may call this method")
