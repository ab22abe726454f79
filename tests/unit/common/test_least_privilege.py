"""Least privilege inside the platform: each RPC admits exactly the services whose code calls it.

How the calls are found: every call from one Privacam service to another goes through
`services.common.peers.Peers`, whose accessors (`device_auth()`, `key_manager()`, ...)
return a stub of that peer. The test parses every module of each service with `ast` and
collects the calls of the form `<anything>.<peer>().<Method>(...)`. To be sound rather
than hopeful, it also fails when a stub could escape that pattern: a peer accessor
(`.<peer>()`, no arguments) whose result is not at once called as a method (stored in
a variable, passed on), a
channel opened with `.channel(...)`, or a generated `...Stub(` built anywhere in
services/ but services/common/peers.py. Each service's `api/policies.py` must then admit,
for every method, exactly the services that call it: no service more, none less.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

from services.common import diagnostics
from services.common.auth import MethodPolicies

ROOT = Path(__file__).parents[3]
SERVICES = ("device_auth", "key_manager", "clip_ingest", "relay_broker", "retention", "access_log")
PEERS = set(SERVICES)  # Peers' accessor names are the services' package names


def identity(service: str) -> str:
    """A service as its certificate names it: service/<name>, '-' for '_'."""
    return service.replace("_", "-")


def _descriptor(service: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"services.{service}.api.policies").SERVICE_DESCRIPTOR


def calls_of(service: str) -> set[tuple[str, str]]:
    """(peer, method) pairs the service's code calls, parsed from every module it has."""
    found: set[tuple[str, str]] = set()
    for path in sorted((ROOT / "services" / service).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        called_accessors: set[int] = set()
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Call)
                and isinstance(node.func.value.func, ast.Attribute)
                and node.func.value.func.attr in PEERS
                and not node.func.value.args
                and not node.func.value.keywords
            ):
                found.add((node.func.value.func.attr, node.func.attr))
                called_accessors.add(id(node.func.value))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if not isinstance(node, ast.Call) or not isinstance(
                node.func, ast.Attribute | ast.Name
            ):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name in PEERS and isinstance(node.func, ast.Attribute) and not node.args:
                assert id(node) in called_accessors, (
                    f"{where}: a peer stub is used other than as `.{name}().<Method>(`; "
                    "call it in place so the allow-list test sees the method"
                )
            assert name != "channel", f"{where}: open peers through Peers' accessors only"
            assert not name.endswith("Stub"), f"{where}: build stubs in services/common/peers.py"
    return found


def callers() -> dict[tuple[str, str], set[str]]:
    """(full service name, method) to the identities of the services that call it."""
    table: dict[tuple[str, str], set[str]] = defaultdict(set)
    for service in SERVICES:
        for peer, method in calls_of(service):
            descriptor = _descriptor(peer)
            assert method in descriptor.methods_by_name, f"{service} calls {peer}.{method}?"
            table[(descriptor.full_name, method)].add(identity(service))
    return table


CALLERS = callers()


def test_the_parser_sees_known_calls() -> None:
    """Guard against a vacuous table: calls read by hand from the adapters are found."""
    unwrap = ("privacam.keys.v1.KeyManagerService", "Unwrap")
    append = ("privacam.accesslog.v1.AccessLogService", "Append")
    assert CALLERS[unwrap] == {"clip-ingest", "retention"}
    assert {"clip-ingest", "relay-broker", "retention"} <= CALLERS[append]


def _admitted(policies: MethodPolicies) -> dict[tuple[str, str], set[str]]:
    return {
        tuple(name.lstrip("/").split("/")): set(policy.services)  # type: ignore[misc]
        for name, policy in policies.items()
    }


@pytest.mark.parametrize("service", SERVICES)
def test_each_method_admits_exactly_the_services_that_call_it(service: str) -> None:
    policies = importlib.import_module(f"services.{service}.api.policies").POLICIES
    wrong = {
        method: {"admits": sorted(admitted), "called by": sorted(CALLERS.get(method, set()))}
        for method, admitted in _admitted(policies).items()
        if admitted != CALLERS.get(method, set())
    }
    assert not wrong, f"allow-lists differ from the code's calls: {wrong}"


def test_no_service_calls_a_method_that_is_not_served() -> None:
    served = set()
    for service in SERVICES:
        served |= set(
            _admitted(importlib.import_module(f"services.{service}.api.policies").POLICIES)
        )
    assert set(CALLERS) <= served


def test_diagnostics_admit_no_service() -> None:
    assert all(not policy.services for policy in diagnostics.POLICIES.values())
