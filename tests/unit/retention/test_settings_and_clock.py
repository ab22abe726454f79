"""The development clock is refused outside loopback and never goes back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.common.clock import FakeClock
from services.common.settings import SettingsError, load_settings
from services.retention.adapters.dev_clock import OffsetFileClock
from services.retention.settings import RetentionSettings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("ca", "cert", "key"):
        (tmp_path / name).write_text("x")
        monkeypatch.setenv(f"PRIVACAM_TLS_{name.upper()}_FILE", str(tmp_path / name))
    monkeypatch.setenv("PRIVACAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("PRIVACAM_KAFKA_USERNAME", "privacam-test")
    monkeypatch.setenv("PRIVACAM_KAFKA_PASSWORD", "secret")
    monkeypatch.setenv("PRIVACAM_RETENTION_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("PRIVACAM_MINIO_ENDPOINT", "127.0.0.1:9000")
    monkeypatch.setenv("PRIVACAM_MINIO_ACCESS_KEY", "a")
    monkeypatch.setenv("PRIVACAM_MINIO_SECRET_KEY", "b")
    monkeypatch.setenv("PRIVACAM_RETENTION_DEV_CLOCK_FILE", str(tmp_path / "offset"))
    return tmp_path


def test_the_dev_clock_is_allowed_on_loopback_only(
    environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(RetentionSettings).dev_clock_file == environment / "offset"
    monkeypatch.setenv("PRIVACAM_RETENTION_BIND_HOST", "0.0.0.0")
    with pytest.raises(SettingsError, match="loopback"):
        load_settings(RetentionSettings)


def test_retention_bounds_must_be_ordered(
    environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVACAM_RETENTION_DEFAULT_RETENTION_DAYS", "40")
    with pytest.raises(SettingsError, match="MAX_RETENTION_DAYS"):
        load_settings(RetentionSettings)


def test_the_offset_clock_moves_forward_only(tmp_path: Path) -> None:
    inner = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    path = tmp_path / "offset"
    clock = OffsetFileClock(inner, path)
    assert clock.now() == inner.now()  # no file yet: no offset
    path.write_text(str(timedelta(days=7).total_seconds()))
    assert clock.now() == inner.now() + timedelta(days=7)
    path.write_text("60")  # going back is ignored
    assert clock.now() == inner.now() + timedelta(days=7)
    path.write_text("garbage")
    assert clock.now() == inner.now() + timedelta(days=7)
