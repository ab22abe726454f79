"""Every RPC of every service with the kinds of caller its policy admits (SERVICE when it
admits any service, and which ones): what the fuzzing and isolation suites walk through."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from google.protobuf.descriptor import MethodDescriptor

from privacam_core.identity import PrincipalKind
from tests.harness import SERVICES


@dataclass(frozen=True)
class Rpc:
    service: str
    method: MethodDescriptor
    kinds: frozenset[PrincipalKind]
    services: frozenset[str]
    """Identity names of the services admitted (e.g. "retention")."""

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def __str__(self) -> str:
        return f"{self.service}.{self.method.name}"


def all_rpcs() -> list[Rpc]:
    found = []
    for service in SERVICES:
        policies = importlib.import_module(f"services.{service}.api.policies")
        descriptor = policies.SERVICE_DESCRIPTOR
        for method in descriptor.methods:
            policy = policies.POLICIES[f"/{descriptor.full_name}/{method.name}"]
            kinds = policy.kinds | ({PrincipalKind.SERVICE} if policy.services else set())
            found.append(Rpc(service, method, frozenset(kinds), policy.services))
    return found
