"""Settings of device_auth: environment variables prefixed PRIVACAM_DEVICE_AUTH_."""

from pydantic_settings import SettingsConfigDict

from services.common.settings import RedisSettings, ServiceSettings


class DeviceAuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_DEVICE_AUTH_")

    default_ports = (7001, 7101, 7201)

    redis: RedisSettings
