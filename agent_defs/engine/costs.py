"""Block usage cost (AutoGPT's `block_usage_cost`): the first cost entry whose filter matches wins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from blocks import Block, BlockCost, CostType


def cost_filter_matches(cost_filter: Any, input_data: Any) -> bool:
    """A dict filter matches when it is a subset of the input; empty, None and "" compare equal."""
    if not isinstance(cost_filter, Mapping) or not isinstance(input_data, Mapping):
        return bool(cost_filter == input_data)
    return not cost_filter or all(
        (not input_data.get(k) and not v)
        or (bool(input_data.get(k)) and cost_filter_matches(v, input_data[k]))
        for k, v in cost_filter.items()
    )


Pricing = Mapping[str, Sequence[BlockCost]]  # block id -> costs, overriding the block's own


def costs_of(block: Block, pricing: Pricing | None = None) -> Sequence[BlockCost]:
    if pricing is not None and block.id in pricing:
        return pricing[block.id]
    return block.costs


def matching_cost(
    block: Block, input_data: Mapping[str, Any], pricing: Pricing | None = None
) -> BlockCost | None:
    for cost in costs_of(block, pricing):
        if cost_filter_matches(dict(cost.filter), input_data):
            return cost
    return None


def block_usage_cost(
    block: Block,
    input_data: Mapping[str, Any],
    data_size: int = 0,
    run_seconds: float = 0.0,
    pricing: Pricing | None = None,
) -> int:
    cost = matching_cost(block, input_data, pricing)
    if cost is None:
        return 0
    if cost.type is CostType.RUN:
        return cost.amount
    if cost.type is CostType.BYTE:
        return int(data_size * cost.amount)
    return int(run_seconds * cost.amount)
