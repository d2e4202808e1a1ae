"""Typed settings: schema, loader and the commented starter file."""

from config.loader import ConfigError, default_config_path, load_settings, starter_toml
from config.schema import (
    CLOSED_STATUSES,
    DEFAULT_CATEGORIES,
    OPEN_STATUSES,
    PRIORITIES,
    STATUSES,
    Settings,
)

__all__ = [
    "CLOSED_STATUSES",
    "DEFAULT_CATEGORIES",
    "OPEN_STATUSES",
    "PRIORITIES",
    "STATUSES",
    "ConfigError",
    "Settings",
    "default_config_path",
    "load_settings",
    "starter_toml",
]
