"""Fixtures of the integration tests: the real stack and the five services (tests/harness.py)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from privacam_sdk import PrivacamClient
from tests.harness import (
    RUN_DIR,
    SERVICES,
    Platform,
    ServiceProcess,
    cleanup_namespace,
    local_stack,
    make_service,
    make_services,
    new_namespace,
    running,
)
from tests.otlp_collector import SpanCollector, exporter_environment
from tests.pki_helpers import PkiFactory

__all__ = ["SERVICES", "Platform", "make_service"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # Whatever the order they were collected in: retention's development clock only moves
    # forward, and once days have passed for it, it deletes the clips other tests upload to
    # the shared platform, so the tests that move it run after the others; the test that
    # kills and restarts the shared stack runs after everything (it expects a moved clock,
    # and clients of a restarted Redis find their pooled connections dead).
    items.sort(key=_late)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """A failed integration test's report carries the errors the services logged while it
    ran: their logs live in the session's temporary directory, which a CI run leaves
    behind nowhere, and an INTERNAL a client saw is explained only there."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "tests/integration" not in str(item.path):
        return
    errors = _service_errors(item.config, since=call.start)
    if errors:
        report.sections.append(("errors the services logged meanwhile", "\n".join(errors)))


def _service_errors(config: pytest.Config, since: float, most: int = 40) -> list[str]:
    """The last `most` ERROR lines of every service log written since `since` (epoch s)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return []
    found: list[str] = []
    for log in sorted(factory.getbasetemp().rglob("*.log")):
        if log.stat().st_mtime < since:
            continue
        lines = [
            line.rstrip()
            for line in log.read_text(errors="replace").splitlines()
            if '"level": "ERROR"' in line and _logged_after(line, since)
        ]
        found += [f"{log.parent.name}/{log.name}: {line[:4000]}" for line in lines[-most:]]
    return found


def _logged_after(line: str, since: float) -> bool:
    try:
        stamp = json.loads(line)["time"]
        return time.mktime(time.strptime(stamp.split(",")[0], "%Y-%m-%d %H:%M:%S")) >= since - 1
    except (ValueError, KeyError, TypeError):
        return True


def _late(item: pytest.Item) -> int:
    if item.get_closest_marker("restarts_stack") is not None:
        return 2
    return 1 if item.get_closest_marker("moves_retention_clock") is not None else 0


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    with local_stack() as env:
        yield env


@pytest.fixture(scope="session")
def span_collector() -> Iterator[SpanCollector]:
    """Receives the spans the services export over OTLP (only traces a test samples)."""
    collector = SpanCollector()
    collector.start()
    yield collector
    collector.stop()


@pytest.fixture(scope="session")
def platform(
    stack_env: dict[str, str],
    pki: PkiFactory,
    tmp_path_factory: pytest.TempPathFactory,
    span_collector: SpanCollector,
) -> Iterator[Platform]:
    namespace = new_namespace(stack_env)
    log_dir = tmp_path_factory.mktemp("service-logs")
    traces = exporter_environment(f"http://127.0.0.1:{span_collector.port}")
    services = make_services(SERVICES, pki, stack_env, namespace, log_dir, traces)
    try:
        with running(*services.values()):
            register_prometheus_targets(services, namespace)
            yield Platform(services, pki, namespace, stack_env)
    finally:
        unregister_prometheus_targets(namespace)
        cleanup_namespace(stack_env, namespace)


def _targets_file(namespace: str) -> Path:
    return RUN_DIR / "prometheus" / "targets" / f"{namespace.rstrip('.')}.json"


def register_prometheus_targets(services: dict[str, ServiceProcess], namespace: str) -> None:
    """Tell the stack's Prometheus (file-based discovery) to scrape this run's services."""
    path = _targets_file(namespace)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = [
        {
            "targets": [f"127.0.0.1:{s.metrics_port}"],
            "labels": {"service": s.name, "env": namespace.rstrip(".")},
        }
        for s in services.values()
    ]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(groups))
    temporary.replace(path)


def unregister_prometheus_targets(namespace: str) -> None:
    _targets_file(namespace).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def profiles_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("privacam-home"))


@pytest.fixture
async def operator_client(platform: Platform, profiles_home: Path) -> AsyncIterator[PrivacamClient]:
    profile = platform.profile("operator", platform.pki.operator(), profiles_home)
    async with PrivacamClient(profile, timeout=10) as client:
        yield client
