"""Cache, circuit breaker, retries and timeout as wrappers around one block call. No Dagster.

A `BlockCall` runs the block once and yields its (validated, redacted) outputs. Each wrapper returns
a `BlockCall` too, so the engine composes what a node's guard asks for:

    cached(breaker_gate(retried(counted(breaker_checked(started(timed(call)))))))

The services (breakers and cache, in Redis) are synchronous clients: their calls run in a worker
thread, off the engine's event loop. Exceptions of the types in `GuardContext.fatal` (those that stop
the whole run) pass through every wrapper untouched: they are neither retried nor held against a
provider.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent_defs.resilience.policy import BreakerService, NodeGuard, NodeTimeoutError, OutputCacheService
from blocks.sdk import RetryPolicy

Output = tuple[str, Any]
BlockCall = Callable[[], AsyncIterator[Output]]
Hook = Callable[[], Awaitable[None]]


@dataclass
class GuardContext:
    """One guarded node execution: who it is (for messages), what stops a run, and what it reports."""

    describe: str  # "node <id> (<block>)"
    fatal: tuple[type[BaseException], ...] = ()
    attempts: int = 0  # attempts of the block so far
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


class _Outcome:
    """What one attempt did: an `error` output, an output on a pin the policy retries on, or a raise."""

    __slots__ = ("failed_pin", "failure", "policy", "raised")

    def __init__(self, policy: RetryPolicy | None) -> None:
        self.policy = policy
        self.failure: str | None = None
        self.failed_pin = False
        self.raised: Exception | None = None

    def see(self, pin: str, value: Any) -> None:
        if pin == "error":
            self.failure = str(value)
        elif self.policy is not None and pin in self.policy.retry_on_pins:
            self.failed_pin = True

    def fail(self, exc: Exception) -> None:
        self.raised = exc
        self.failure = str(exc) or type(exc).__name__

    @property
    def failed(self) -> bool:
        return self.failed_pin or self.failure is not None

    @property
    def transient(self) -> bool:
        """Worth retrying, and a failure of the provider (for its breaker)."""
        if not self.failed:
            return False
        if self.policy is None:
            return True  # for the breaker: any failure of a block without a classification
        if isinstance(self.raised, NodeTimeoutError):
            return self.policy.retry_timeouts
        return self.failed_pin or self.policy.is_transient(self.failure, self.raised)


def counted(call: BlockCall, ctx: GuardContext) -> BlockCall:
    async def attempt() -> AsyncIterator[Output]:
        ctx.attempts += 1
        async for output in call():
            yield output

    return attempt


def timed(call: BlockCall, seconds: float | None, of_attempts: int, ctx: GuardContext) -> BlockCall:
    """Each attempt is cancelled after `seconds` and raises NodeTimeoutError."""
    if seconds is None:
        return call

    async def attempt() -> AsyncIterator[Output]:
        timer = asyncio.timeout(seconds)
        try:
            async with timer:
                async for output in call():
                    yield output
        except TimeoutError as exc:
            if not timer.expired():
                raise
            raise NodeTimeoutError(
                f"{ctx.describe} timed out after {seconds:g} s (timeout_seconds) "
                f"on attempt {ctx.attempts} of {of_attempts}"
            ) from exc

    return attempt


def started(call: BlockCall, on_start: Hook) -> BlockCall:
    """`on_start` (charging, the RUNNING event) once, just before the first attempt runs."""
    pending = [on_start]

    async def attempt() -> AsyncIterator[Output]:
        if pending:
            await pending.pop()()
        async for output in call():
            yield output

    return attempt


def breaker_checked(
    call: BlockCall, breakers: BreakerService, provider: str, policy: RetryPolicy | None, ctx: GuardContext
) -> BlockCall:
    """Fails fast (CircuitOpenError) while the provider's breaker is open; records each attempt. The
    first attempt was let through by `breaker_gate` already."""

    async def attempt() -> AsyncIterator[Output]:
        if ctx.attempts > 1:
            await asyncio.to_thread(breakers.before_call, provider)
        outcome = _Outcome(policy)
        try:
            async for pin, value in call():
                outcome.see(pin, value)
                yield pin, value
        except ctx.fatal:
            raise
        except Exception as exc:
            outcome.fail(exc)
            await asyncio.to_thread(breakers.record, provider, not outcome.transient)
            raise
        await asyncio.to_thread(breakers.record, provider, not outcome.transient)

    return attempt


def breaker_gate(call: BlockCall, breakers: BreakerService, provider: str) -> BlockCall:
    """Fails fast (CircuitOpenError) before anything else, uncharged, while the breaker is open."""

    async def run() -> AsyncIterator[Output]:
        await asyncio.to_thread(breakers.before_call, provider)
        async for output in call():
            yield output

    return run


def retried(call: BlockCall, policy: RetryPolicy, ctx: GuardContext) -> BlockCall:
    """Attempts until one succeeds, fails for good, or `policy.attempts` are spent, with backoff.
    Each attempt's outputs are held back until it is final: only the last attempt's are yielded."""

    async def run() -> AsyncIterator[Output]:
        while True:
            outcome = _Outcome(policy)
            held: list[Output] = []
            try:
                async for pin, value in call():
                    outcome.see(pin, value)
                    held.append((pin, value))
            except ctx.fatal:
                raise
            except Exception as exc:
                outcome.fail(exc)
            if outcome.transient and ctx.attempts < policy.attempts:
                await ctx.sleep(policy.delay(ctx.attempts, random.random))
                continue
            for output in held:
                yield output
            if outcome.raised is not None:
                raise outcome.raised
            return

    return run


def cached(
    call: BlockCall,
    cache: OutputCacheService,
    key: str,
    ttl_seconds: float,
    policy: RetryPolicy | None,
    on_hit: Hook,
    ctx: GuardContext,
) -> BlockCall:
    """An earlier identical execution's outputs instead of running the block (`on_hit` first); a
    successful run's outputs are stored."""

    async def run() -> AsyncIterator[Output]:
        hit = await asyncio.to_thread(cache.get, key)
        if hit is not None:
            await on_hit()
            for output in hit:
                yield output
            return
        outcome = _Outcome(policy)
        outputs: list[Output] = []
        async for pin, value in call():
            outcome.see(pin, value)
            outputs.append((pin, value))
            yield pin, value
        if not outcome.failed:
            await asyncio.to_thread(cache.put, key, outputs, ttl_seconds)

    return run


def guarded(
    call: BlockCall,
    guard: NodeGuard,
    ctx: GuardContext,
    on_start: Hook,
    on_cache_hit: Hook,
    breakers: BreakerService | None,
    provider: str | None,
    cache: OutputCacheService | None,
    cache_key: str | None,
) -> BlockCall:
    """The wrappers a node's guard asks for, around `call`. `on_start` runs once before the block
    runs (after the breaker first lets it through: an open breaker fails the node uncharged);
    `on_cache_hit` instead of it when the outputs come from the cache."""
    policy = guard.retry
    attempts = policy.attempts if policy is not None else 1
    checked = breakers is not None and provider is not None
    call = started(timed(call, guard.timeout_seconds, attempts, ctx), on_start)
    if checked:
        call = breaker_checked(call, breakers, provider, policy, ctx)  # type: ignore[arg-type]
    call = counted(call, ctx)
    if guard.buffered and policy is not None:
        call = retried(call, policy, ctx)
    if checked:
        call = breaker_gate(call, breakers, provider)  # type: ignore[arg-type]
    if cache is not None and cache_key is not None and guard.cache_ttl_seconds is not None:
        call = cached(call, cache, cache_key, guard.cache_ttl_seconds, policy, on_cache_hit, ctx)
    return call


__all__ = ["BlockCall", "GuardContext", "guarded"]
