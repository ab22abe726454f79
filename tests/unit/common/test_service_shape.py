"""Every service has the same shape and declares who may call each of its RPCs."""

from __future__ import annotations

import importlib
import re

import pytest

from services.common.runtime import GrpcApi, undeclared_methods

SERVICES = ("device_auth", "key_manager", "clip_ingest", "relay_broker", "retention", "access_log")


@pytest.mark.parametrize("service", SERVICES)
def test_every_rpc_has_an_authorization_policy(service: str) -> None:
    policies = importlib.import_module(f"services.{service}.api.policies")
    api = GrpcApi(policies.SERVICE_DESCRIPTOR.full_name, lambda server: None)
    assert undeclared_methods([api], policies.POLICIES) == []


@pytest.mark.parametrize("service", SERVICES)
def test_same_inner_shape(service: str) -> None:
    for module in (
        "app",
        "settings",
        "__main__",
        "api.servicer",
        "api.policies",
        "domain",
        "adapters",
        "streams",
    ):
        importlib.import_module(f"services.{service}.{module}")


def test_a_missing_policy_is_caught() -> None:
    policies = importlib.import_module("services.clip_ingest.api.policies")
    partial = dict(list(policies.POLICIES.items())[1:])
    api = GrpcApi(policies.SERVICE_DESCRIPTOR.full_name, lambda server: None)
    assert undeclared_methods([api], partial) == [next(iter(policies.POLICIES))]


def test_a_misspelled_method_is_refused() -> None:
    from services.common.auth import APP
    from services.common.runtime import method_policies

    policies = importlib.import_module("services.clip_ingest.api.policies")
    with pytest.raises(ValueError, match="has no methods"):
        method_policies(policies.SERVICE_DESCRIPTOR, {"UplodClip": APP})


@pytest.mark.parametrize("service", SERVICES)
def test_service_readme_lists_every_rpc_and_setting(service: str) -> None:
    from pathlib import Path

    from services.common.settings import ServiceSettings, describe

    readme = (Path(__file__).parents[3] / "services" / service / "README.md").read_text()
    policies = importlib.import_module(f"services.{service}.api.policies")
    for method in policies.POLICIES:
        assert f"`{method.rsplit('/', 1)[1]}`" in readme
    settings = importlib.import_module(f"services.{service}.settings")
    (cls,) = [
        v
        for v in vars(settings).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
    ]
    for line in describe(cls).splitlines():
        if line.startswith("PRIVACAM_"):
            assert line.split()[0] in readme, f"{service}/README.md lacks {line.split()[0]}"


def _readme_callers(readme: str, method: str) -> set[str]:
    """The callers cell of a method's row: kinds (`app`) and services (`service/retention`)
    before any ':' note, parenthesised notes dropped; `nobody` or `no certificate` is none."""
    (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{method}` |")]
    cell = re.sub(r"\([^)]*\)", "", row.split("|")[2]).split(":")[0]
    names = {name.strip() for name in cell.split(",") if name.strip()}
    return set() if names in ({"nobody"}, {"no certificate"}) else names


@pytest.mark.parametrize("service", SERVICES)
def test_service_readme_says_who_may_call_each_rpc(service: str) -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[3] / "services" / service / "README.md").read_text()
    policies = importlib.import_module(f"services.{service}.api.policies")
    for full_name, policy in policies.POLICIES.items():
        method = full_name.rsplit("/", 1)[1]
        expected = {kind.value for kind in policy.kinds} | {
            f"service/{name}" for name in policy.services
        }
        assert _readme_callers(readme, method) == expected, f"{service}/README.md: {method}"
