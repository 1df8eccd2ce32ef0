"""The ``Settings`` model (pydantic-settings), loaded by ``settings`` on first use."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from closeguard.tools._env import (
    API_KEY_NAMES,
    BASE_URL_NAMES,
    CLOSE_BASE_URL,
    MODEL_NAMES,
    OAUTH_ACCESS_TOKEN_NAMES,
    STORE_URL_NAMES,
    default_store_url,
)


class Settings(BaseSettings):
    """closeguard's configuration; every field can be set by its environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    close_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices(*API_KEY_NAMES)
    )
    close_base_url: str = Field(
        default=CLOSE_BASE_URL, validation_alias=AliasChoices(*BASE_URL_NAMES)
    )
    close_oauth_access_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices(*OAUTH_ACCESS_TOKEN_NAMES)
    )
    close_oauth_refresh_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOSE_OAUTH_REFRESH_TOKEN")
    )
    close_oauth_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("CLOSE_OAUTH_CLIENT_ID")
    )
    close_oauth_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOSE_OAUTH_CLIENT_SECRET")
    )
    store_url: str = Field(
        default_factory=default_store_url,
        validation_alias=AliasChoices(*STORE_URL_NAMES),
    )
    model: str | None = Field(default=None, validation_alias=AliasChoices(*MODEL_NAMES))
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CLOSEGUARD_REDIS_URL", "redis_url")
    )
    notify: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOSEGUARD_NOTIFY", "notify")
    )
    """Apprise URLs (space or comma separated) told of every approval request."""
