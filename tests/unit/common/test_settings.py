from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings, SettingsError, describe, load_settings


class ExampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_EXAMPLE_")

    default_ports = (7001, 7101, 7201)


@pytest.fixture
def valid_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CA", "CERT", "KEY"):
        path = tmp_path / name
        path.write_text("pem")
        monkeypatch.setenv(f"PRIVACAM_TLS_{name}_FILE", str(path))
    monkeypatch.setenv("PRIVACAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("PRIVACAM_KAFKA_USERNAME", "privacam-test")
    monkeypatch.setenv("PRIVACAM_KAFKA_PASSWORD", "secret")


@pytest.mark.usefixtures("valid_env")
def test_loads_a_complete_environment() -> None:
    settings = load_settings(ExampleSettings)
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.grpc_port == 7001


@pytest.mark.usefixtures("valid_env")
def test_every_bad_setting_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRIVACAM_KAFKA_BOOTSTRAP_SERVERS")
    monkeypatch.setenv("PRIVACAM_TLS_KEY_FILE", "/no/such/key.pem")
    monkeypatch.setenv("PRIVACAM_EXAMPLE_GRPC_PORT", "seven")
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings)
    message = str(raised.value)
    assert "PRIVACAM_KAFKA_BOOTSTRAP_SERVERS: is required but not set" in message
    assert "PRIVACAM_TLS_KEY_FILE: Path does not point to a file" in message
    assert "PRIVACAM_EXAMPLE_GRPC_PORT" in message
    assert "'seven'" in message


@pytest.mark.usefixtures("valid_env")
def test_kafka_without_its_own_user_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS and SCRAM are the default: a service without its Kafka user does not start
    (nothing falls back to an unauthenticated connection)."""
    monkeypatch.delenv("PRIVACAM_KAFKA_PASSWORD")
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings)
    assert "PRIVACAM_KAFKA_USERNAME and PRIVACAM_KAFKA_PASSWORD" in str(raised.value)
    monkeypatch.setenv("PRIVACAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    with pytest.raises(SettingsError, match="PRIVACAM_KAFKA_CERT_FILE"):
        load_settings(ExampleSettings)


@pytest.mark.usefixtures("valid_env")
def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.settings import RedisSettings

    monkeypatch.setenv("PRIVACAM_REDIS_URL", "http://user:hunter2@example")
    with pytest.raises(SettingsError) as raised:
        load_settings(RedisSettings)
    assert "PRIVACAM_REDIS_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_help_lists_variables_with_their_docs() -> None:
    text = describe(ExampleSettings)
    assert "PRIVACAM_EXAMPLE_BIND_HOST (default '127.0.0.1')" in text
    assert "PRIVACAM_KAFKA_BOOTSTRAP_SERVERS\n    Comma-separated" in text


@pytest.mark.usefixtures("valid_env")
def test_the_message_size_limit_is_a_setting_of_every_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.common.runtime import server_options
    from services.common.settings import DEFAULT_MAX_MESSAGE_BYTES

    settings = load_settings(ExampleSettings)
    assert settings.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    assert dict(server_options(settings))["grpc.max_receive_message_length"] == 4 * 1024 * 1024
    monkeypatch.setenv("PRIVACAM_EXAMPLE_MAX_MESSAGE_BYTES", str(1024 * 1024))
    options = dict(server_options(load_settings(ExampleSettings)))
    assert options["grpc.max_receive_message_length"] == 1024 * 1024
    # Below a clip chunk's 256 KiB plus room for its envelope: refused, named.
    monkeypatch.setenv("PRIVACAM_EXAMPLE_MAX_MESSAGE_BYTES", str(256 * 1024))
    with pytest.raises(SettingsError, match="PRIVACAM_EXAMPLE_MAX_MESSAGE_BYTES"):
        load_settings(ExampleSettings)
