"""Input defaults that do not fit their pins.

A node's `input_default` is checked the way the engine checks a node execution's input: merged with
its dynamic pins folded back, then validated by the block with AutoGPT's conversion (`make_input`:
a numeric string into a number pin, a number into a text pin, ... are fine). A default the engine
would refuse (wrong type that no conversion bridges, a value outside an enum) would leave the node
silently unrun, so validation refuses it, naming the pin and what it takes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from blocks import Block, BlockType
from blocks.sdk import BlockInputError


def _used_defaults(input_default: Mapping[str, Any], overridden: frozenset[str]) -> dict[str, Any]:
    """The defaults a node execution runs with: a linked pin's value replaces its default."""
    return {k: v for k, v in input_default.items() if k not in overridden}


def default_problems(
    block: Block, input_default: Mapping[str, Any], linked: frozenset[str]
) -> Iterator[tuple[str, str]]:
    """(pin, message) for each default of a node that its block refuses; `linked` are the sink pin
    names of the node's incoming links (the block's `optional_link_pins` still use their default
    until a value arrives)."""
    if block.block_type is BlockType.NOTE:
        return
    # Imported here: the engine imports validation, which imports this module.
    from agent_defs.engine.dynamic_pins import merge

    given = merge(_used_defaults(input_default, linked - block.optional_link_pins))
    if not given:
        return
    try:
        block.make_input(given)
    except BlockInputError as exc:
        for pin, message in exc.problems:
            base = pin.split("[", 1)[0]
            # Missing required pins are reported on their own; checks across pins (no pin named)
            # depend on values that arrive at run time.
            if base in given:
                yield base, f"default does not fit the pin{_declared(block, input_default, base)}: {message}"


def _declared(block: Block, input_default: Mapping[str, Any], pin: str) -> str:
    kind = block.input_pins(input_default).get(pin)
    return f" ({kind})" if kind else ""
