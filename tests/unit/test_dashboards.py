"""The chart's dashboards: generated from scripts/dashboards.py, querying real metrics only."""

from __future__ import annotations

import importlib
import json
import re

from prometheus_client import REGISTRY

from scripts import dashboards
from services.common.metrics import GRPC_CODE_LABELS
from tests.harness import ROOT

_METRIC = re.compile(r"\b((?:privacam|grpc_server|process)_[a-z_]+|up)\b(?=\s*[{\[)])")
_SUFFIXES = ("_bucket", "_count", "_sum")
_GRPC_CODES = re.compile(r'grpc_code\s*!?=~?\s*"([^"]+)"')


def test_the_checked_in_dashboards_are_the_generated_ones() -> None:
    boards = dashboards.all_dashboards()
    on_disk = {p.name for p in dashboards.OUT.glob("*.json")}
    assert on_disk == set(boards), "run: python -m scripts.dashboards"
    for name, board in boards.items():
        assert (dashboards.OUT / name).read_text() == dashboards.render(board), (
            f"{name} is stale: run python -m scripts.dashboards"
        )


def test_every_service_has_a_dashboard_with_unique_panel_ids() -> None:
    boards = dashboards.all_dashboards()
    for service in dashboards.SERVICES:
        board = boards[f"{service.replace('_', '-')}.json"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
    assert len({board["uid"] for board in boards.values()}) == len(boards)


def test_every_queried_metric_is_exported_by_a_service() -> None:
    for service in (*dashboards.SERVICES, "privacy_watch"):
        importlib.import_module(f"services.{service}.app")  # registers its metrics
    exported = set(REGISTRY._names_to_collectors) | {"up"}  # up: Prometheus's own
    queried: set[str] = set()
    for board in dashboards.all_dashboards().values():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                queried |= set(_METRIC.findall(target["expr"]))
    assert len(queried) > 10
    missing = sorted(
        name
        for name in queried
        if name not in exported and not any(name.removesuffix(s) in exported for s in _SUFFIXES)
    )
    assert missing == []
    json.dumps(dashboards.all_dashboards())  # serialisable as the ConfigMaps need


def test_every_grpc_code_selected_is_one_the_services_expose() -> None:
    """The alerts and panels on failed calls select grpc_code by Go's spelling; a service
    exposing another ("UNAVAILABLE") would leave them silent, as they once were."""
    queries = [
        target["expr"]
        for board in dashboards.all_dashboards().values()
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    chart = ROOT / "charts" / "privacam"
    queries += [(chart / "templates" / "prometheusrule.yaml").read_text()]
    queries += [(chart / "ci" / "prometheusrule.test.yaml").read_text()]
    selected = {
        code
        for query in queries
        for found in _GRPC_CODES.findall(query)
        for code in found.split("|")
    }
    assert {"Internal", "Unavailable", "OK"} <= selected
    assert selected <= set(GRPC_CODE_LABELS.values())
