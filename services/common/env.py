"""Typed reads of environment variables that name the variable in every error."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.errors import InvalidInputError


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default).strip() or default


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, got {text!r}") from None
    # `not >=` also refuses NaN.
    if not value >= minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {text!r}")
    return value


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port; 0 lets the OS choose."""
    port = env_int(env, name, default)
    if port > 65535:
        raise InvalidInputError(f"{name} must be a TCP port from 0 to 65535, got {port}")
    return port


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError(f"{name} must be true or false, got {text!r}")
