from __future__ import annotations

from pathlib import Path

import pytest

from tests.pki_helpers import PkiFactory


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFactory:
    return PkiFactory(Path(tmp_path_factory.mktemp("pki")))
