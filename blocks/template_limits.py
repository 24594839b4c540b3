"""The limits of one template render, and the checks that enforce them (see
`blocks/template_sandbox.py` for where the sandbox calls them, and the README's "Template limits").

A render's `RenderBudget` counts steps (loop iterations and calls) against MAX_STEPS, nesting against
MAX_CALL_DEPTH, and its deadline and cancel flag; the size checks refuse a string over
MAX_OUTPUT_CHARS or a container over MAX_ITEMS, estimating the text of widths, repetitions and
joins before it is built. No Dagster; starts no thread.
"""

from __future__ import annotations

import re
import string
import threading
import time
from collections.abc import Iterable, Sized
from typing import Any

# AutoGPT's caps.
MAX_EXPONENT = 1000
MAX_RANGE = 10_000
MAX_SEQUENCE_REPEAT = 10_000
# This platform's: see the module docstring and the README.
MAX_STEPS = 500_000
MAX_CALL_DEPTH = 50
CALL_STEPS = 10  # steps a macro call or a recursive loop's `loop(...)` counts for
MAX_OUTPUT_CHARS = 10_000_000
MAX_ITEMS = 1_000_000
MAX_INT_BITS = 100_000  # an int product larger than this (about 30,000 digits) is refused
RENDER_TIMEOUT_SECONDS = 10.0

_DIGITS = re.compile(r"\d+")


class TemplateLimitError(Exception):
    """A render went over one of the limits; the message names it. Not a ValueError, so that no
    filter's own `except ValueError` can swallow it."""


class RenderBudget:
    """What one render may still spend. `cancelled` is set from another thread to stop it."""

    __slots__ = ("cancelled", "deadline", "depth", "steps", "timeout")

    def __init__(self, timeout: float = RENDER_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.steps = 0
        self.depth = 0
        self.cancelled = False

    def step(self, weight: int = 1) -> None:
        self.steps += weight
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(
                f"more than {MAX_STEPS:,} steps (loop iterations and calls) in one render"
            )
        if self.cancelled:
            raise TemplateLimitError("the render was cancelled (the node timed out or was stopped)")
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the render took longer than {self.timeout:g} s")


_local = threading.local()


def current_budget() -> RenderBudget:
    """The budget of the render running on this thread (`use_budget`). Outside such a render, a
    fresh one each time: only the size caps then hold."""
    budget: RenderBudget | None = getattr(_local, "budget", None)
    return budget if budget is not None else RenderBudget()


def use_budget(budget: RenderBudget | None) -> None:
    _local.budget = budget


def check_size(value: Any, what: str) -> Any:
    """`value`, if it is within the caps on built strings and containers."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_OUTPUT_CHARS:
            raise TemplateLimitError(f"{what} would be {len(value):,} characters (max {MAX_OUTPUT_CHARS:,})")
    elif isinstance(value, list | tuple | dict | set) and len(value) > MAX_ITEMS:
        raise TemplateLimitError(f"{what} would hold {len(value):,} items (max {MAX_ITEMS:,})")
    return value


def check_width(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_OUTPUT_CHARS:
        shown = f"{value:,}" if value.bit_length() < 64 else "a number that large"
        raise TemplateLimitError(f"{what} {shown} is over the text limit ({MAX_OUTPUT_CHARS:,} characters)")


_WIDTH_DIGITS = len(str(MAX_OUTPUT_CHARS))


# A printf conversion: its width and precision are groups 1 and 2.
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*|\*)(?:\.(\d*|\*))?[hlL]?[a-zA-Z%]")


def _format_specs(text: str, printf: bool) -> Iterable[str]:
    """The parts of a format string that say how wide a field is: '%9.2f' or '{:>9}'."""
    if printf:
        for match in _PRINTF_SPEC.finditer(text):
            yield from (group for group in match.groups() if group)
        return
    try:
        yield from (spec for _, _, spec, _ in string.Formatter().parse(text) if spec)
    except ValueError:
        return  # malformed: the format call itself says so


def check_format_string(text: Any, what: str, printf: bool) -> None:
    """Widths and precisions written into a format string ('%999999999d', '{:>999999999}')."""
    if isinstance(text, str):
        for spec in _format_specs(text, printf):
            for digits in _DIGITS.findall(spec):
                if len(digits) >= _WIDTH_DIGITS:  # int() of thousands of digits would itself fail
                    check_width(int(digits[:20]), f"{what}: a width or precision of")


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else 0


# Methods and filters whose int arguments are output widths: refused above the text limit.
_WIDTH_TAKERS = frozenset({"center", "ljust", "rjust", "zfill"})


def takes_widths_from_arguments(text: Any, printf: bool) -> bool:
    """Whether a format string reads a width from its arguments ('%*d', '{:{}}')."""
    marker = "*" if printf else "{"
    return isinstance(text, str) and any(marker in spec for spec in _format_specs(text, printf))


# Filters that turn their whole value into text: its text is estimated before they run.
_TEXT_FILTERS = frozenset(
    {"string", "e", "escape", "forceescape", "safe", "urlencode", "striptags", "title", "upper", "lower"}
    | {"capitalize", "trim", "wordwrap", "indent", "center", "replace", "truncate", "wordcount"}
)


def check_growth(
    name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any], method: bool = True
) -> None:
    """Refuse, before they run, the string operations whose result would exceed the text limit
    (`value` is the method's object, or the filter's input when not `method`)."""
    if not method and name in _TEXT_FILTERS and not isinstance(value, str):
        check_size_estimate(estimated_chars(value), f"the text of the {name} filter's input")
    if name in _WIDTH_TAKERS:
        for arg in (*args, *kwargs.values()):
            check_width(arg, f"{name}(): a width of")
    elif name in ("format", "format_map") and isinstance(value, str):
        check_format_string(value, name, printf=False)
        if takes_widths_from_arguments(value, printf=False):
            mapping = args[0] if name == "format_map" and args and isinstance(args[0], dict) else {}
            for arg in (*args, *kwargs.values(), *mapping.values()):
                check_width(arg, f"{name}(): a width of")
    elif name == "replace" and len(args) >= 2 and isinstance(value, str):
        old, new = str(args[0]), str(args[1])
        count = len(value) + 1 if old == "" else value.count(old)
        check_size_estimate(len(value) + count * max(len(new) - len(old), 0), f"{name}()")
    elif name == "join":  # the filter: items|join(separator); the method: separator.join(items)
        items, separator = (args[0] if args else (), value) if method else (value, args[0] if args else "")
        joined = estimated_chars(items) + _length(items) * len(str(separator))
        check_size_estimate(joined, f"{name}()")
    elif name == "indent" and isinstance(value, str):
        width = args[0] if args else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        check_size_estimate(len(value) + (value.count("\n") + 1) * per_line, f"{name}()")
    elif name == "expandtabs" and isinstance(value, str):
        size = args[0] if args else kwargs.get("tabsize", 8)
        check_size_estimate(len(value) + value.count("\t") * (size if isinstance(size, int) else 8), name)
    elif name == "slice" and args and isinstance(args[0], int) and args[0] > MAX_ITEMS:
        raise TemplateLimitError(f"{name}() into {args[0]:,} parts (max {MAX_ITEMS:,})")


def estimated_chars(value: Any) -> int:
    """About how many characters `str(value)` would be, without building it; stops counting once
    over the text limit (and after 2 * MAX_ITEMS values, so a list holding itself ends too)."""
    total, visited, stack = 0, 0, [value]
    while stack and total <= MAX_OUTPUT_CHARS and visited < 2 * MAX_ITEMS:
        item = stack.pop()
        visited += 1
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 * len(item)
            stack.extend(item)
        else:
            total += 8
    return total


def check_size_estimate(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise TemplateLimitError(f"{what} would be at least {size:,} characters (max {MAX_OUTPUT_CHARS:,})")
