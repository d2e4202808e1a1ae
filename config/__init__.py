"""Typed settings: schema, loader and the commented starter file."""

from config.loader import ConfigError, default_config_path, load_settings, starter_toml
from config.schema import DEFAULT_CATEGORIES, PRIORITIES, Settings

__all__ = [
    "DEFAULT_CATEGORIES",
    "PRIORITIES",
    "ConfigError",
    "Settings",
    "default_config_path",
    "load_settings",
    "starter_toml",
]
