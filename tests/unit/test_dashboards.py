"""The chart's dashboards: generated from scripts/dashboards.py, querying real metrics only."""

from __future__ import annotations

import importlib
import json
import re

from prometheus_client import REGISTRY

from scripts import dashboards

_METRIC = re.compile(r"\b((?:privacam|grpc_server|process)_[a-z_]+|up)\b(?=\s*[{\[)])")
_SUFFIXES = ("_bucket", "_count", "_sum")


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
    for service in dashboards.SERVICES:
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
