"""What an LLM call costs in credits, by model: AutoGPT's published tiers (backend/data/block_cost_config.py,
MODEL_COST and TOKEN_COST: credits per 1M tokens at 1 credit ~ $0.01 with a 1.5x margin).

An LLM node is charged after it ran, for the tokens it reported (every call, retries included); a node
that reported no tokens but made a call pays the model's flat tier. A model not listed here is free
unless the operator prices it (AGENTFLOW_BLOCK_COSTS, which replaces a block's whole table).
"""

from __future__ import annotations

from blocks.sdk import BlockCost, CostType, TokenRate

# model id -> (flat credits per call, credits per 1M input tokens, per 1M output tokens)
MODEL_PRICES: dict[str, tuple[int, float, float]] = {
    "o1": (16, 2250, 9000),
    "o1-mini": (4, 165, 660),
    "o3": (4, 300, 1200),
    "o3-mini": (2, 165, 660),
    "gpt-5-2025-08-07": (2, 188, 1500),
    "gpt-5-mini-2025-08-07": (1, 38, 300),
    "gpt-5-nano-2025-08-07": (1, 8, 60),
    "gpt-4.1-2025-04-14": (2, 300, 1200),
    "gpt-4.1-mini-2025-04-14": (1, 60, 240),
    "gpt-4o": (3, 375, 1500),
    "gpt-4o-mini": (1, 23, 90),
    "gpt-4-turbo": (10, 1500, 4500),
    "claude-opus-4-1-20250805": (21, 2250, 11250),
    "claude-4-opus-20250514": (21, 2250, 11250),
    "claude-sonnet-4-20250514": (5, 450, 2250),
    "claude-sonnet-4-5-20250929": (9, 450, 2250),
    "claude-haiku-4-5-20251001": (4, 150, 750),
    "claude-3-haiku-20240307": (1, 38, 188),
    "llama-3.3-70b-versatile": (1, 89, 119),
    "llama-3.1-8b-instant": (1, 8, 12),
    "perplexity/sonar": (1, 150, 150),
    "perplexity/sonar-pro": (5, 450, 2250),
    "perplexity/sonar-deep-research": (10, 300, 1200),
}

LLM_COSTS: tuple[BlockCost, ...] = tuple(
    BlockCost(
        amount=flat,
        type=CostType.TOKENS,
        filter={"model": model},
        token_rate=TokenRate(input=rate_in, output=rate_out),
    )
    for model, (flat, rate_in, rate_out) in MODEL_PRICES.items()
)
