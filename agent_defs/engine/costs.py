"""Block usage cost (AutoGPT's `block_usage_cost`): the first cost entry whose filter matches wins."""

from __future__ import annotations

import math
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
    stats: Mapping[str, float] | None = None,
) -> int:
    cost = matching_cost(block, input_data, pricing)
    if cost is None:
        return 0
    if cost.type is CostType.RUN:
        return cost.amount
    if cost.type is CostType.BYTE:
        return int(data_size * cost.amount)
    if cost.type is CostType.TOKENS:
        return token_cost(cost, stats or {})
    return int(run_seconds * cost.amount)


def token_cost(cost: BlockCost, stats: Mapping[str, float]) -> int:
    """Credits for the tokens a block reported (rounded up), or the flat amount when it reported none
    (e.g. it failed before any call was answered)."""
    tokens_in = stats.get("input_token_count", 0)
    tokens_out = stats.get("output_token_count", 0)
    if cost.token_rate is None or not (tokens_in or tokens_out):
        return cost.amount if stats.get("llm_call_count") else 0
    total = tokens_in * cost.token_rate.input + tokens_out * cost.token_rate.output
    return max(0, math.ceil(total / 1_000_000))
