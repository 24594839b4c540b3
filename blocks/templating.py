"""Jinja templates rendered in a restricted sandbox, shared by the blocks that take format strings
(FillTextTemplate, AgentOutput): AutoGPT's TextFormatter limits, built once per process."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import BaseLoader, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MAX_EXPONENT = 1000
MAX_RANGE = 10_000
MAX_SEQUENCE_REPEAT = 10_000


def _format_filter(value: Any, format_string: str | None = None) -> Any:
    """AutoGPT's `format` filter: printf-style number formatting, e.g. {{ x | format('%.2f') }}."""
    return format_string % float(value) if format_string else value


def _safe_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise OverflowError(f"range() too large ({len(result)} items, max {MAX_RANGE})")
    return result


class _RestrictedEnvironment(SandboxedEnvironment):
    """The Jinja sandbox plus AutoGPT's caps on `**`, sequence repetition and range()."""

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            for operand, what in ((right, "Exponent"), (left, "Base")):
                if isinstance(operand, int | float) and abs(operand) > MAX_EXPONENT:
                    raise OverflowError(f"{what} too large for exponentiation (max {MAX_EXPONENT})")
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_SEQUENCE_REPEAT
                ):
                    raise OverflowError(f"Sequence repeat too large (max {MAX_SEQUENCE_REPEAT} items)")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is pow and len(args) >= 2:
            for operand in args[:2]:
                if isinstance(operand, int | float) and abs(operand) > MAX_EXPONENT:
                    raise OverflowError(f"pow() operand too large (max {MAX_EXPONENT})")
        return super().call(__context, __obj, *args, **kwargs)


def _make_environment(autoescape: bool) -> _RestrictedEnvironment:
    env = _RestrictedEnvironment(loader=BaseLoader(), autoescape=autoescape)
    env.globals.clear()
    env.globals["range"] = _safe_range
    for name in ("pprint", "tojson", "urlize", "xmlattr"):
        env.filters.pop(name, None)
    env.filters["format"] = _format_filter
    return env


# Built once per module: one environment per escape mode.
_ENVIRONMENTS = {False: _make_environment(False), True: _make_environment(True)}


@lru_cache(maxsize=512)
def _compile_template(source: str, escape_html: bool) -> Template:
    return _ENVIRONMENTS[escape_html].from_string(source)


def render_template(source: str, values: dict[str, Any], escape_html: bool = False) -> str:
    """Render a user template in the sandbox; raises ValueError with a clear message on failure."""
    try:
        return _compile_template(source, escape_html).render(values)
    except SecurityError as exc:
        raise ValueError(f"template refused by the sandbox: {exc}") from exc
    except (TemplateError, OverflowError) as exc:
        raise ValueError(f"template error: {exc}") from exc
