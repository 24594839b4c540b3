"""Dynamic pins (rule 5): `values_#_key`, `items_$_0`, `obj_@_attr`.

On a source pin they pick a part of the yielded value: a path that does not resolve, or resolves to
None, sends nothing, and `_@_` reads attributes only (it does not index a dict), as AutoGPT's
`parse_execution_output` does. On a sink pin they are merged back into the base input; a list index
that is not a whole number makes the input invalid (AutoGPT's `merge_execution_input` raises).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent_defs.graph.model import DICT_SPLIT, DYNAMIC_SPLITS, LIST_SPLIT, OBJC_SPLIT

NOTHING: Any = object()  # the path did not resolve: nothing is sent

_TOKEN = re.compile(r"(_#_|_\$_|_@_)")


def is_dynamic(name: str) -> bool:
    return any(sep in name for sep in DYNAMIC_SPLITS)


def _tokens(path: str) -> list[tuple[str, str]] | None:
    parts = _TOKEN.split(path)
    # path starts with a delimiter, so parts = ["", sep, ident, sep, ident, ...]
    if not parts or parts[0] != "" or len(parts) % 2 == 0:
        return None
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


def extract(output_pin: str, value: Any, link_source: str) -> Any:
    """What a link from `link_source` carries when the block yields (output_pin, value)."""
    if link_source == output_pin:
        return value
    if not link_source.startswith(output_pin):
        return NOTHING
    tokens = _tokens(link_source[len(output_pin) :])
    if tokens is None:
        return NOTHING
    current = value
    for sep, ident in tokens:
        if sep == LIST_SPLIT:
            if not isinstance(current, list | tuple):
                return NOTHING
            try:
                current = current[int(ident)]
            except (ValueError, IndexError):
                return NOTHING
        elif sep == DICT_SPLIT:
            if not isinstance(current, Mapping) or ident not in current:
                return NOTHING
            current = current[ident]
        else:  # OBJC_SPLIT: an attribute; a dict's keys are not attributes (nor are its methods sent)
            if isinstance(current, Mapping) or not hasattr(current, ident):
                return NOTHING
            current = getattr(current, ident)
    # A path that resolves to None fires nothing (only an exact pin name sends a None).
    return NOTHING if current is None else current


class DynamicPinError(ValueError):
    """A sink pin's dynamic path cannot be merged (a list index that is not a whole number)."""

    def __init__(self, pin: str, message: str) -> None:
        super().__init__(f"pin {pin!r}: {message}")
        self.pin = pin


def merge(data: Mapping[str, Any]) -> dict[str, Any]:
    """Fold dynamic sink pins into their base input: {"values_#_a": 1} -> {"values": {"a": 1}}."""
    result: dict[str, Any] = {}
    dynamic: list[tuple[str, Any]] = []
    for key, value in data.items():
        if is_dynamic(key):
            dynamic.append((key, value))
        else:
            result[key] = value
    for key, value in sorted(dynamic, key=lambda kv: kv[0]):
        _assign(result, key, value)
    return result


def _assign(root: dict[str, Any], key: str, value: Any) -> None:
    first = _TOKEN.search(key)
    assert first is not None
    base = key[: first.start()]
    tokens = _tokens(key[first.start() :]) or []
    container_key: Any = base
    parent: Any = root
    for sep, ident in tokens:
        current = parent[container_key] if _has(parent, container_key) else None
        if sep == LIST_SPLIT:
            if not isinstance(current, list):
                current = list(current) if isinstance(current, tuple) else []
            if not ident.isdigit():
                raise DynamicPinError(key, f"list index {ident!r} after {LIST_SPLIT} must be a whole number")
            index = int(ident)
            if index >= len(current):
                current.extend([None] * (index - len(current) + 1))
            _set(parent, container_key, current)
            parent, container_key = current, index
        else:  # DICT_SPLIT and OBJC_SPLIT both build a mapping here
            if not isinstance(current, dict):
                current = dict(current) if isinstance(current, Mapping) else {}
            _set(parent, container_key, current)
            parent, container_key = current, ident
    _set(parent, container_key, value)


def _has(parent: Any, key: Any) -> bool:
    if isinstance(parent, list):
        return 0 <= key < len(parent)
    return key in parent


def _set(parent: Any, key: Any, value: Any) -> None:
    parent[key] = value


__all__ = [
    "DICT_SPLIT",
    "LIST_SPLIT",
    "NOTHING",
    "OBJC_SPLIT",
    "DynamicPinError",
    "extract",
    "is_dynamic",
    "merge",
]
