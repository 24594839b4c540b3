"""AutoGPT's type conversion of node inputs (`backend/util/type.py` `convert`, applied as
`executor/utils.py` `validate_exec` applies it).

Before a node execution's merged input is validated, every value that is not None and whose type is
not exactly its pin's annotation is converted to that annotation: text to numbers (text that is no
number becomes 0), containers to numbers (their length), scalars to lists and dicts, anything but
text to text as JSON (`true`, not `True`), elements of `list[int]` and the like one by one. Pins whose
annotation is not one of list, dict, tuple, set, str, int, float or bool (a union such as
`int | None`, an enum, a model, `Any`) are left as they are, as AutoGPT leaves them; the block's
input model then decides.

No Dagster and no block imports here: the SDK (`Block.make_input`) and validation both use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel


class ConversionError(ValueError):
    """A value cannot be converted to its pin's type (e.g. infinity to an integer)."""


class PinConversionError(ConversionError):
    def __init__(self, pin: str, message: str) -> None:
        super().__init__(message)
        self.pin = pin


_CONVERTIBLE: frozenset[Any] = frozenset({list, dict, tuple, str, set, int, float, bool})
_CONTAINERS = (list, dict, tuple, set)


def _to_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set):
        return list(value)
    if isinstance(value, dict):
        # AutoGPT makes (key, value) tuples, but every value reaches the next node through its
        # database service as JSON, where a pair is a two-item list: values here stay JSON-shaped.
        return [[k, v] for k, v in value.items()]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                return json.loads(text)  # type: ignore[no-any-return]
            except json.JSONDecodeError:
                return [text]
        return [text]
    return [value]


def _to_dict(value: Any) -> dict[Any, Any]:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {"value": value}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    if isinstance(value, list | tuple):
        return dict(enumerate(value))
    if isinstance(value, dict):
        return value
    return {"value": value}


def _to_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str | list | set):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(value.items())
    if isinstance(value, tuple):
        return value
    return (value,)


def _to_set(value: Any) -> set[Any]:
    if isinstance(value, str | list | tuple):
        return set(value)
    if isinstance(value, dict):
        return set(value.items())
    if isinstance(value, set):
        return value
    return {value}


def _to_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _to_number(value: Any, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, _CONTAINERS):
        return kind(len(value))
    if isinstance(value, kind):  # an int pin keeps a bool as it is (bool is an int)
        return value
    try:
        return kind(float(value))
    except (ValueError, TypeError):
        return kind(0)  # AutoGPT's fallback: text that is no number becomes 0


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


_TO_ORIGIN: dict[Any, Any] = {
    list: _to_list,
    dict: _to_dict,
    tuple: _to_tuple,
    set: _to_set,
    str: _to_str,
    int: lambda v: _to_number(v, int),
    float: lambda v: _to_number(v, float),
    bool: _to_bool,
}


def _elements(value: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if origin is list:
        return [convert(v, args[0]) for v in value]
    if origin is tuple:
        if len(args) == 1:
            return tuple(convert(v, args[0]) for v in value)
        # As AutoGPT: element-wise by position (zip stops at the shorter side).
        return tuple(convert(v, t) for v, t in zip(value, args, strict=False))
    if origin is dict:
        key_type, value_type = args
        return {convert(k, key_type): convert(v, value_type) for k, v in value.items()}
    if origin is set:
        return {convert(v, args[0]) for v in value}
    return value


def _convert(value: Any, target: Any) -> Any:
    origin = get_origin(target) or target
    if origin not in _CONVERTIBLE:
        return value
    args = get_args(target)
    if not isinstance(value, origin):
        value = _TO_ORIGIN[origin](value)
    return _elements(value, origin, args) if args else value


def convert(value: Any, target: Any) -> Any:
    """`value` converted to the type annotation `target` as AutoGPT converts it."""
    try:
        return _convert(value, target)
    except ConversionError:
        raise
    except Exception as exc:  # e.g. int(inf), unhashable set members, values json cannot write
        raise ConversionError(f"cannot convert {_shown(value)} to {_type_name(target)}: {exc}") from exc


_plan_cache: dict[type[BaseModel], tuple[tuple[str, Any], ...]] = {}


def _convertible_fields(model: type[BaseModel]) -> tuple[tuple[str, Any], ...]:
    """(pin, annotation) of the model's pins whose annotation `convert` acts on (others are left as
    they are, so skipping them changes nothing)."""
    cached = _plan_cache.get(model)
    if cached is None:
        cached = tuple(
            (name, field.annotation)
            for name, field in model.model_fields.items()
            if (get_origin(field.annotation) or field.annotation) in _CONVERTIBLE
        )
        _plan_cache[model] = cached
    return cached


def convert_input(model: type[BaseModel], data: Mapping[str, Any]) -> Mapping[str, Any]:
    """`data` with each value that is not None converted to its pin's annotation, when its type is not
    exactly that annotation (AutoGPT's `validate_exec`). Returns `data` itself when nothing changed;
    raises PinConversionError naming the pin a value cannot be converted for."""
    converted: dict[str, Any] | None = None
    for pin, target in _convertible_fields(model):
        value = data.get(pin)
        if value is None or type(value) is target:
            continue
        try:
            new = convert(value, target)
        except ConversionError as exc:
            raise PinConversionError(pin, str(exc)) from None
        if new is not value:
            if converted is None:
                converted = dict(data)
            converted[pin] = new
    return converted if converted is not None else data


def invented_values(model: type[BaseModel], data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(pin, message) for each value that `convert` would replace by one it makes up rather than
    reads: text that is no number into a number pin (0), a container into a number pin (its
    length), text other than true/false/1/0 or a container into a boolean pin. Run-time values are
    converted all the same; validation uses this to refuse such node defaults."""
    for pin, target in _convertible_fields(model):
        value = data.get(pin)
        if value is not None:
            message = _invention(value, target)
            if message is not None:
                yield pin, message


def _invention(value: Any, target: Any) -> str | None:
    origin = get_origin(target) or target
    args = get_args(target)
    if origin in (int, float) and not isinstance(value, bool | int | float):
        if isinstance(value, _CONTAINERS):
            return (
                f"Input should be a valid number (got {_shown(value)}); "
                f"AutoGPT would run the node with its length, {len(value)}"
            )
        try:
            float(value)
        except (ValueError, TypeError):
            return (
                f"unable to parse string as a number (got {_shown(value)}); AutoGPT would run the node with 0"
            )
        return None
    if origin is bool:
        if isinstance(value, _CONTAINERS):
            return (
                f"Input should be a valid boolean (got {_shown(value)}); "
                f"AutoGPT would run the node with {bool(value)}"
            )
        if isinstance(value, str) and value.strip().lower() not in ("true", "false", "1", "0"):
            return (
                f"Input should be a valid boolean (got {_shown(value)}); "
                "AutoGPT reads any text but 'true' and '1' as false"
            )
        return None
    if args and isinstance(value, origin):
        if origin in (list, set) or (origin is tuple and len(args) == 1):
            return next((m for v in value if (m := _invention(v, args[0])) is not None), None)
        if origin is dict:
            return next((m for v in value.values() if (m := _invention(v, args[1])) is not None), None)
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(target: Any) -> str:
    return getattr(target, "__name__", None) or str(target)


__all__ = ["ConversionError", "PinConversionError", "convert", "convert_input", "invented_values"]
