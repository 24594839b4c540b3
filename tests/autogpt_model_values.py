"""AutoGPT's value rules, for the model in tests/autogpt_model.py: `convert` (util/type.py, the cases
the test graphs use) and dynamic pins (data/dynamic_fields.py `parse_execution_output`,
`merge_execution_input`). Written from AutoGPT's code, independently of agent_defs."""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

LIST_SPLIT, DICT_SPLIT, OBJC_SPLIT = "_$_", "_#_", "_@_"
DELIMITERS = (LIST_SPLIT, DICT_SPLIT, OBJC_SPLIT)


# --- util/type.py convert (the cases our families use) --------------------------------------------
def convert(value: Any, target: Any) -> Any:
    """AutoGPT's `convert(value, target_type)`: annotations that are not plain containers or scalars
    (Any, unions, enums) leave the value as it is."""
    origin = get_origin(target) or target
    args = get_args(target)
    if origin not in (list, dict, str, int, float, bool):
        return value
    if not isinstance(value, origin):
        value = _convert_to(value, origin)
    if origin is list and args:
        return [convert(v, args[0]) for v in value]
    if origin is dict and args:
        return {convert(k, args[0]): convert(v, args[1]) for k, v in value.items()}
    return value


def _convert_to(value: Any, origin: type) -> Any:
    if origin is list:
        if isinstance(value, list | tuple | set):
            return list(value)
        if isinstance(value, dict):
            return list(value.items())
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    return [text]
            return [text]
        return [value]
    if origin is dict:
        if isinstance(value, str):
            try:
                loaded = json.loads(value)
            except json.JSONDecodeError:
                return {"value": value}
            return loaded if isinstance(loaded, dict) else {"value": loaded}
        if isinstance(value, list | tuple):
            return dict(enumerate(value))
        return {"value": value}
    if origin is str:
        return json.dumps(value)
    if origin in (int, float):
        if isinstance(value, list | dict | tuple | set):
            return origin(len(value))
        try:
            return origin(float(value))
        except (ValueError, TypeError):
            return origin(0)
    if origin is bool:
        if isinstance(value, str):
            return value.lower() in ("true", "1")
        return bool(value)
    return value


# --- data/dynamic_fields.py -----------------------------------------------------------------------
def _first_delimiter(name: str) -> int:
    found = [i for i in (name.find(d) for d in DELIMITERS) if i >= 0]
    return min(found) if found else -1


def _tokens(path: str) -> list[tuple[str, str]] | None:
    tokens = []
    while path:
        delim = next((d for d in DELIMITERS if path.startswith(d)), None)
        if delim is None:
            return None
        path = path[len(delim) :]
        end = _first_delimiter(path)
        ident, path = (path, "") if end < 0 else (path[:end], path[end:])
        if not ident:
            return None
        tokens.append((delim, ident))
    return tokens


def parse_output(pin: str, value: Any, link_source: str) -> Any:
    """What a link from `link_source` carries when a node yields (pin, value); None: nothing (unless
    the names match exactly, when the whole value is sent, None included)."""
    if link_source == pin:
        return value
    if not link_source.startswith(pin) or link_source == pin:
        return None
    tokens = _tokens(link_source[len(pin) :])
    if tokens is None:
        return None
    current = value
    for delim, ident in tokens:
        if delim == LIST_SPLIT:
            try:
                index = int(ident)
            except ValueError:
                return None
            if not isinstance(current, list) or index >= len(current):
                return None
            current = current[index]
        elif delim == DICT_SPLIT:
            if not isinstance(current, dict) or ident not in current:
                return None
            current = current[ident]
        else:  # attributes only: a dict's keys are not attributes
            if not hasattr(current, ident):
                return None
            current = getattr(current, ident)
    return current


def merge_dynamic(data: dict[str, Any]) -> dict[str, Any]:
    """`merge_execution_input`: `values_#_a` is folded into `values` (the flat keys stay too)."""
    merged: dict[str, Any] = {}
    for key, value in data.items():
        at = _first_delimiter(key)
        tokens = _tokens(key[at:]) if at >= 0 else None
        if tokens is None:
            merged[key] = value
            continue
        base = key[:at]
        merged[base] = _assign(merged.get(base), tokens, value)
    data.update(merged)
    return data


def _assign(container: Any, tokens: list[tuple[str, str]], value: Any) -> Any:
    if not tokens:
        return value
    (delim, ident), rest = tokens[0], tokens[1:]
    if delim == LIST_SPLIT:
        index = int(ident)  # a non-integer index raises, as AutoGPT's does
        container = list(container) if isinstance(container, list) else []
        while len(container) <= index:
            container.append(None)
        container[index] = _assign(container[index], rest, value)
        return container
    container = dict(container) if isinstance(container, dict) else {}
    container[ident] = _assign(container.get(ident), rest, value)
    return container
