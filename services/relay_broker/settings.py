"""Settings of relay_broker: environment variables prefixed PRIVACAM_RELAY_BROKER_."""

from pydantic_settings import SettingsConfigDict

from services.common.settings import RedisSettings, ServiceSettings, TurnSettings


class RelayBrokerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_RELAY_BROKER_")

    default_ports = (7004, 7104, 7204)

    redis: RedisSettings
    turn: TurnSettings
