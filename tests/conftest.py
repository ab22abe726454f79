from __future__ import annotations

from pathlib import Path

import pytest

from tests.pki_helpers import PkiFactory

# tests/k8s/ needs the one-node Kubernetes of `make k8s` (root, minutes cold): only
# `make k8s-test` runs it (`pytest tests/k8s`); `pytest tests` leaves it out.
collect_ignore = ["k8s"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFactory:
    return PkiFactory(Path(tmp_path_factory.mktemp("pki")))
