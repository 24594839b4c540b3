"""Whole-number settings read from the environment when a component starts (never at import), with
one error wording for every variable: the variable, what was expected, and what it held."""

from __future__ import annotations

import os


class SettingError(ValueError):
    """An environment setting that is not valid (the message names the variable and its value)."""


def int_from_env(name: str, default: int, minimum: int) -> int:
    """`name` as a whole number of at least `minimum`; `default` when unset or blank."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{name}={text[:40]!r}: not a whole number") from None
    if value < minimum:
        raise SettingError(f"{name}={text[:40]!r}: must be at least {minimum}")
    return value
