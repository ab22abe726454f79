"""A PNG of the overview dashboard's main panels, drawn from the local Prometheus.

`python -m scripts.snapshot_dashboard [--minutes 15] [--out docs/overview.png]` runs the
panels' own PromQL (from scripts/dashboards.py) against the stack's Prometheus, with the
Kubernetes labels mapped to the local ones (`namespace` → `env="local"`, `job` →
`service`), and draws one chart per panel. No Grafana is needed, so the picture in the
docs comes from the same queries the shipped dashboard runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from scripts import dashboards

PANELS = (
    "Traffic: RPCs per second",
    "Errors: server-side error ratio",
    "Latency: p99 of unary RPCs",
    "Clips ingested per second",
    "Calls refused by authentication or authorization",
    "Events per second",
)


def localize(expr: str) -> str:
    """The dashboard's query with the local stack's labels instead of Kubernetes'."""
    return (
        expr.replace('namespace="$namespace"', 'env="local"')
        .replace('job=~"$job"', 'service=~".+"')
        .replace("by (job)", "by (service)")
        .replace("by (job, le)", "by (service, le)")
        .replace("$__rate_interval", "1m")
    )


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    if not prometheus.startswith(("http://", "https://")):
        raise ValueError("--prometheus must be an http(s) URL")
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 15})
    url = f"{prometheus}/api/v1/query_range?{params}"
    with urllib.request.urlopen(url, timeout=30) as reply:  # noqa: S310 - scheme checked above
        body = json.load(reply)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body}")
    return list(body["data"]["result"])


def label(series: dict[str, Any], legend: str) -> str:
    text = legend.replace("{{job}}", "{{service}}")
    for key, value in series["metric"].items():
        text = text.replace("{{" + key + "}}", value)
    return text or "value"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("docs/overview.png"))
    args = parser.parse_args(argv)
    board = dashboards.all_dashboards()["platform-overview.json"]
    panels = {p["title"]: p for p in board["panels"] if p.get("targets")}
    end = time.time()
    start = end - args.minutes * 60
    figure, axes = plt.subplots(3, 2, figsize=(14, 11), constrained_layout=True)
    for axis, title in zip(axes.flat, PANELS, strict=True):
        panel = panels[title]
        drawn = 0
        for target in panel["targets"]:
            for series in query_range(args.prometheus, localize(target["expr"]), start, end):
                points = [
                    (float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf")
                ]
                if not points:
                    continue
                times = [datetime.fromtimestamp(t, UTC) for t, _ in points]
                axis.plot(
                    times, [v for _, v in points], label=label(series, target["legendFormat"])
                )
                drawn += 1
        axis.set_title(f"{title} ({panel['fieldConfig']['defaults']['unit']})", fontsize=10)
        axis.tick_params(labelsize=8)
        if drawn:
            axis.legend(fontsize=7, loc="upper left")
        else:
            axis.text(0.5, 0.5, "no data in this window", ha="center", transform=axis.transAxes)
    figure.suptitle(
        f"Privacam / Platform overview — local stack, {args.minutes} min to "
        f"{datetime.fromtimestamp(end, UTC):%Y-%m-%d %H:%M} UTC"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
