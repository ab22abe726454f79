"""Settings of key_manager: environment variables prefixed PRIVACAM_KEY_MANAGER_."""

from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class KeyManagerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_KEY_MANAGER_")

    default_ports = (7002, 7102, 7202)
