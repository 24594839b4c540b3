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
    """Fold dynamic sink pins into their base input: {"values_#_a": 1} -> {"values": {"a": 1}}.

    As AutoGPT's `merge_execution_input`: keys are taken in order, so a base value given before its
    dynamic pins (a default) is extended by them, one given after replaces them. Containers are
    copied, never changed in place: they may be the node's stored defaults."""
    result: dict[str, Any] = {}
    for key, value in data.items():
        first = _TOKEN.search(key)
        tokens = _tokens(key[first.start() :]) if first is not None else None
        if first is None or tokens is None:
            result[key] = value
            continue
        base = key[: first.start()]
        result[base] = _assign(result.get(base), tokens, value, key)
    return result


def _assign(container: Any, tokens: list[tuple[str, str]], value: Any, key: str) -> Any:
    """`container` with `value` set along `tokens`, as a copy."""
    if not tokens:
        return value
    (sep, ident), rest = tokens[0], tokens[1:]
    if sep == LIST_SPLIT:
        if not ident.isdigit():
            raise DynamicPinError(key, f"list index {ident!r} after {LIST_SPLIT} must be a whole number")
        index = int(ident)
        items = list(container) if isinstance(container, list | tuple) else []
        if index >= len(items):
            items.extend([None] * (index - len(items) + 1))
        items[index] = _assign(items[index], rest, value, key)
        return items
    # DICT_SPLIT and OBJC_SPLIT both build a mapping here (blocks take objects as dicts).
    mapping = dict(container) if isinstance(container, Mapping) else {}
    mapping[ident] = _assign(mapping.get(ident), rest, value, key)
    return mapping


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
