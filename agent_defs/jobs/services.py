"""The platform services a run's ops use: credits, credentials, live events, circuit breakers and the
output cache.

A ConfigurableResource that reads its settings when a run starts, never at import. Each service is
off when its backing store is not configured, so the embedded default (no servers) runs as before:
no credits are charged, no stored credentials can be resolved, no events are published.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from agent_defs.engine import ExecutionObserver, ReferenceEngine, RunOptions
from agent_defs.engine.reference import CredentialsResolver, ExecutionBudget
from agent_defs.graph.model import Graph
from blocks import BlockCost, CostType, TokenRate

DATABASE_VAR = "AGENTFLOW_DATABASE_URL"
REDIS_VAR = "AGENTFLOW_REDIS_URL"
PRICING_VAR = "AGENTFLOW_BLOCK_COSTS"  # JSON: {block_id: [{"amount", "type", "filter", "token_rate"}]}
PRIVATE_ADDRESSES_VAR = "AGENTFLOW_ALLOW_PRIVATE_ADDRESSES"
SERVICES_RESOURCE_KEY = "agentflow_services"


class _UnavailableCredentials:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def resolve(self, credential_id: str, user_id: str) -> Any:
        raise ValueError(f"credential {credential_id} cannot be resolved: {self.reason}")


class PlatformServices(ConfigurableResource):
    """Empty settings mean: take them from the environment when the run starts."""

    database_url: str = ""
    redis_url: str = ""
    block_costs_file: str = ""
    allow_private_addresses: bool | None = None

    _ledger: Any = PrivateAttr(default=None)
    _credentials: Any = PrivateAttr(default=None)
    _publisher: Any = PrivateAttr(default=None)
    _pricing: Any = PrivateAttr(default=None)
    _breakers: Any = PrivateAttr(default=None)
    _cache: Any = PrivateAttr(default=None)
    _kv_store: Any = PrivateAttr(default=None)
    _settings: dict[str, Any] = PrivateAttr(default_factory=dict)
    _budget: ExecutionBudget | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        database_url = self.database_url or os.environ.get(DATABASE_VAR, "")
        redis_url = self.redis_url or os.environ.get(REDIS_VAR, "")
        costs_file = self.block_costs_file or os.environ.get(PRICING_VAR, "")
        if costs_file:
            self._pricing = load_pricing(Path(costs_file))
        allow_private = self.allow_private_addresses
        if allow_private is None:
            allow_private = os.environ.get(PRIVATE_ADDRESSES_VAR, "").strip().lower() in ("1", "true", "yes")
        # Operator switches blocks must obey; loopback and private networks stay closed by default.
        self._settings = {"allow_private_addresses": allow_private}
        from agent_defs.store.kv_data import kv_store_for

        home = context.instance.root_directory if context.instance is not None else None
        self._kv_store = kv_store_for(database_url, Path(home) if home else None)
        if database_url:
            from agent_defs.credits.ledger import CreditLedger

            self._ledger = CreditLedger(database_url)
            try:
                from agent_defs.credentials import CredentialsStore, KeyRing

                self._credentials = CredentialsStore(database_url, KeyRing.from_env())
            except Exception as exc:  # no key configured: only credential-using nodes are affected
                self._credentials = _UnavailableCredentials(str(exc))
        if redis_url:
            import redis

            from agent_defs.requests.env import prefix_from_env
            from agent_defs.requests.events import EventPublisher
            from agent_defs.resilience.breaker import CircuitBreakers
            from agent_defs.resilience.cache import OutputCache, cache_enabled_from_env

            client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2)
            self._publisher = EventPublisher(client)
            # Shared by every run process; a Redis outage turns them off, never fails a run.
            prefix = prefix_from_env()
            self._breakers = CircuitBreakers.from_env(redis_url, prefix)
            if cache_enabled_from_env():
                self._cache = OutputCache.from_url(redis_url, prefix)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        for service in (self._ledger, self._credentials, self._kv_store):
            close = getattr(service, "close", None)
            if close is not None:
                close()

    @property
    def credentials(self) -> CredentialsResolver | None:
        return self._credentials

    def observer_factory(
        self, dagster_run_id: str
    ) -> Callable[[Graph, RunOptions], ExecutionObserver] | None:
        if self._ledger is None and self._publisher is None:
            return None
        from agent_defs.platform.observer import PlatformObserver

        ledger, publisher = self._ledger, self._publisher
        return lambda graph, options: PlatformObserver(
            graph, options.user_id, dagster_run_id, ledger, publisher
        )

    @property
    def settings(self) -> dict[str, Any]:
        return self._settings

    def execution_budget(self, limit: int) -> ExecutionBudget:
        """The run's one node-execution budget: every step (and its sub-agents) takes from it. The
        resource lives as long as the run (the jobs use the in-process executor)."""
        if self._budget is None:
            self._budget = ExecutionBudget(limit)
        return self._budget

    def engine_for(self, engine: ReferenceEngine, dagster_run_id: str) -> ReferenceEngine:
        return engine.with_services(
            self.observer_factory(dagster_run_id),
            self.credentials,
            self._pricing,
            breakers=self._breakers,
            cache=self._cache,
            kv_store=self._kv_store,
        )


def load_pricing(path: Path) -> dict[str, list[BlockCost]]:
    """The operator's block costs; an unreadable file is an error naming it and what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(block_id): [
                BlockCost(
                    amount=int(c["amount"]),
                    type=CostType(c.get("type", "run")),
                    filter=c.get("filter") or {},
                    token_rate=TokenRate(**c["token_rate"]) if c.get("token_rate") else None,
                )
                for c in costs
            ]
            for block_id, costs in data.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{PRICING_VAR}={path}: not a block cost table: {type(exc).__name__}: {exc}"
        ) from None
