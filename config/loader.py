"""Read ``mailtriage.toml``, overlay environment secrets, validate.

Every failure becomes a :class:`ConfigError` whose message names the key path
(``mailbox.port: ...``) so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.errors import ConfigError
from config.schema import Settings

__all__ = ["ConfigError", "database_url", "load_settings", "parse_settings", "resolve_path"]

ENV_PREFIX = "MAILTRIAGE_"
_SECTIONS = (
    "database",
    "mailbox",
    "outbound",
    "web",
    "sla",
    "approval",
    "tickets",
    "guards",
    "storage",
    "classifier",
    "attachments",
)


def default_config_path() -> Path:
    """Return ``$MAILTRIAGE_CONFIG`` or ``./mailtriage.toml``."""
    return Path(os.environ.get("MAILTRIAGE_CONFIG") or "mailtriage.toml")


def starter_toml() -> str:
    """Return the commented starter configuration shipped with the package."""
    return resources.files("config").joinpath("defaults.toml").read_text(encoding="utf-8")


def _env_overlay(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply ``MAILTRIAGE_<SECTION>_<KEY>`` (and ``..._OAUTH2_<KEY>``) onto ``data``."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "MAILTRIAGE_CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue
        key = rest[len(section) + 1 :]
        target = data.setdefault(section, {})
        for sub in ("oauth2", "openai"):
            if key.startswith(sub + "_"):
                target = target.setdefault(sub, {})
                key = key[len(sub) + 1 :]
                break
        target[key] = value


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg += _did_you_mean(err["loc"])
    # model validators report "key: message"; lift the key into the path
    if ": " in msg and " " not in msg.split(": ", 1)[0]:
        sub, msg = msg.split(": ", 1)
        loc = f"{loc}.{sub}" if loc else sub
    return f"{loc or '(top level)'}: {msg}"


def _did_you_mean(loc: tuple) -> str:
    """'; did you mean "port"?' for a misspelt key, from the schema's own field names."""
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        model = _model_of(field.annotation) if field else None
        if model is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _model_of(annotation: Any) -> Any:
    """The settings model inside ``annotation`` (``X``, ``list[X]``, ``X | None``)."""
    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def parse_settings(
    data: dict[str, Any],
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_optional: bool = False,
) -> Settings:
    """Validate a parsed TOML mapping (plus env overlay) into :class:`Settings`.

    ``secrets_optional``: mailbox credentials may be missing (read-only commands
    that never connect: an admin reading tickets needs no mailbox password).
    """
    data = dict(data)
    _env_overlay(data, os.environ if environ is None else environ)
    data.setdefault("base_dir", str(base_dir))
    try:
        return Settings.model_validate(data, context={"secrets_optional": secrets_optional})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


def load_settings(
    path: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_optional: bool = False,
) -> Settings:
    """Load and validate the config file at ``path`` (default: :func:`default_config_path`)."""
    path = Path(path) if path else default_config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {path}",
            "run 'mailtriage init' to write a starter config, or pass --config PATH",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", "check the file's permissions"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}", "fix the TOML syntax at the line and column named"
        ) from None
    return parse_settings(data, path.resolve().parent, environ, secrets_optional=secrets_optional)


def resolve_path(settings: Settings, value: str) -> Path:
    """Resolve a path from the config relative to the config file's folder."""
    p = Path(value)
    return p if p.is_absolute() else Path(settings.base_dir) / p


def database_url(settings: Settings) -> str:
    """Return the database URL with a relative SQLite path made absolute."""
    url = settings.database.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(resolve_path(settings, url[len(prefix) :]))
    return url
