"""The authorization hook every RPC passes through.

Each service declares, for every RPC it serves, who may call it: kinds of principal
admitted whatever their name (apps, cameras, operators) and, by name, the other
services allowed to (least privilege inside the platform: a service reaches only the
methods its own code calls, see tests/unit/common/test_least_privilege.py). A method
without a declared policy is refused (fail closed), and the runtime refuses to start
a service whose servicers have undeclared methods. Resource-level checks (this
tenant's camera, a grant) belong to the domain, which reads the caller from
`current_principal()`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from privacam_core.identity import ID_PATTERN, Principal, PrincipalKind
from services.common import metrics
from services.common.errors import PermissionDenied, Unauthenticated

log = logging.getLogger("privacam.auth")


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may call one RPC: `kinds` of principal admitted whatever their name (app,
    camera, operator; never service), and `services` admitted by identity name
    (`service/<name>`, e.g. "clip-ingest"). Combine with `|`: `APP | services("retention")`."""

    kinds: frozenset[PrincipalKind] = frozenset()
    services: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if PrincipalKind.SERVICE in self.kinds:
            raise ValueError("services are admitted by name: use services(...)")
        for name in self.services:
            if not ID_PATTERN.fullmatch(name):
                raise ValueError(f"{name!r} is not a service identity name, e.g. clip-ingest")

    def __or__(self, other: Policy) -> Policy:
        return Policy(self.kinds | other.kinds, self.services | other.services)

    def admits(self, principal: Principal) -> bool:
        if principal.kind is PrincipalKind.SERVICE:
            return principal.name in self.services
        return principal.kind in self.kinds

    def describe(self) -> str:
        """E.g. "app identities or services clip-ingest, retention"."""
        parts = []
        if self.kinds:
            parts.append(", ".join(sorted(k.value for k in self.kinds)) + " identities")
        if self.services:
            parts.append("services " + ", ".join(sorted(self.services)))
        return " or ".join(parts)


def services(*names: str) -> Policy:
    """Admit these services, named as their certificates name them (`service/<name>`)."""
    return Policy(services=frozenset(names))


ENROLLMENT_PORT_ONLY = Policy()
"""No certificate on the mTLS port: served only on the enrollment port (server-only TLS)."""
NOBODY = Policy()
"""No caller at all on the mTLS port."""
CAMERA = Policy(frozenset({PrincipalKind.CAMERA}))
APP = Policy(frozenset({PrincipalKind.APP}))
OPERATOR = Policy(frozenset({PrincipalKind.OPERATOR}))

MethodPolicies = Mapping[str, Policy]
"""Full gRPC method name (`/package.Service/Method`) to who may call it."""

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
        if not allowed.admits(principal):
            _refused(principal, method)
            if not (allowed.kinds or allowed.services):
                raise PermissionDenied("this method is not open to callers with a certificate")
            refused = f"service {principal.name} may not call this method; " * (
                principal.kind is PrincipalKind.SERVICE
            )
            raise PermissionDenied(f"{refused}only {allowed.describe()} may call this method")


def _refused(principal: Principal, method: str) -> None:
    """Counted and logged by method and kind of caller; a service by its name (no person's
    or device's id: those are personal data)."""
    service, _, name = method.lstrip("/").partition("/")
    metrics.CALLERS_REFUSED.labels(service, name, principal.kind.value).inc()
    extra = {"rpc_method": method, "principal_kind": principal.kind.value}
    if principal.kind is PrincipalKind.SERVICE:
        extra["caller_service"] = principal.name
    log.warning("caller not admitted by the method's policy", extra=extra)
