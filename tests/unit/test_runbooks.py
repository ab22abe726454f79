"""Every alert the chart ships links to a runbook section that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_alert_has_a_runbook_section() -> None:
    rules = (ROOT / "charts/privacam/templates/prometheusrule.yaml").read_text()
    alerts = set(re.findall(r"-\s+alert:\s+(\w+)", rules))
    assert len(alerts) >= 7
    sections = set(re.findall(r"^## (\w+)\s*$", (ROOT / "docs/runbooks.md").read_text(), re.M))
    assert sorted(alerts - sections) == []


def test_every_runbook_link_points_at_its_own_alert() -> None:
    rules = (ROOT / "charts/privacam/templates/prometheusrule.yaml").read_text()
    # Each alert's runbook_url anchor is its own name in lower case.
    for alert, anchor in re.findall(
        r"-\s+alert:\s+(\w+)(?:(?!-\s+alert:).)*?runbook_url:[^#]*#(\w+)", rules, re.S
    ):
        assert anchor == alert.lower(), alert
