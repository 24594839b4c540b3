"""User notifications: run outcomes and balance warnings, kept in Redis and optionally POSTed.

Each notification is JSON `{"id", "user_id", "kind", "payload", "at"}`, LPUSHed to
`<prefix>:notifications:{user_id}` (newest first, trimmed to the latest 1,000) and, when a webhook
URL is configured, POSTed to it as the same JSON. A notification is a side effect of a run that has
already happened, so nothing here raises: failures are logged and reported in the `NotifyResult`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_defs.requests.env import redact_url

if TYPE_CHECKING:
    import httpx
    import redis

logger = logging.getLogger(__name__)

KEEP_LATEST = 1000
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_ATTEMPTS = 3
WEBHOOK_BACKOFF_S = 0.5  # doubled after each failed attempt


class NotificationKind(StrEnum):
    RUN_SUCCEEDED = "RUN_SUCCEEDED"
    RUN_FAILED = "RUN_FAILED"
    ZERO_BALANCE = "ZERO_BALANCE"
    LOW_BALANCE = "LOW_BALANCE"


class Notification(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    user_id: str
    kind: NotificationKind
    payload: dict[str, Any] = Field(default_factory=dict)
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


class NotifyResult(BaseModel):
    """What happened to one notification. `webhook` is "sent", "failed" or "not configured"."""

    notification: Notification
    stored: bool
    store_error: str | None = None
    webhook: str = "not configured"
    webhook_attempts: int = 0
    webhook_status: int | None = None  # the last HTTP status received, if any
    webhook_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.stored and self.webhook != "failed"


class Notifier:
    def __init__(
        self,
        redis_client: redis.Redis,
        webhook_url: str | None = None,
        *,
        prefix: str = "agentflow",
        attempts: int = WEBHOOK_ATTEMPTS,
        backoff_s: float = WEBHOOK_BACKOFF_S,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = redis_client
        self.webhook_url = webhook_url or None
        self.prefix = prefix
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._http = http_client
        self._sleep = sleep

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:notifications:{user_id}"

    def notify(
        self, user_id: str, kind: NotificationKind | str, payload: Mapping[str, Any] | None = None
    ) -> NotifyResult:
        """Store and (if configured) POST one notification. An unknown `kind` is a programming error
        and raises ValueError; delivery failures never raise."""
        note = Notification(user_id=user_id, kind=NotificationKind(kind), payload=dict(payload or {}))
        body = note.model_dump_json()
        result = NotifyResult(notification=note, stored=False)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(self.key(user_id), body)
            pipe.ltrim(self.key(user_id), 0, KEEP_LATEST - 1)
            pipe.execute()
            result.stored = True
        except Exception as exc:  # Redis down: still try the webhook
            result.store_error = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "notification %s for user %s not stored: %s", note.kind, user_id, result.store_error
            )
        if self.webhook_url:
            self._post(body, result)
        return result

    def _post(self, body: str, result: NotifyResult) -> None:
        import httpx

        where = redact_url(self.webhook_url or "")
        client = self._http or httpx.Client(timeout=self.timeout_s)
        try:
            for attempt in range(1, self.attempts + 1):
                result.webhook_attempts = attempt
                try:
                    response = client.post(
                        self.webhook_url or "", content=body, headers={"content-type": "application/json"}
                    )
                    result.webhook_status = response.status_code
                    if response.is_success:
                        result.webhook, result.webhook_error = "sent", None
                        return
                    result.webhook_error = f"HTTP {response.status_code}"
                    # Another 4xx (except timeout/too many requests) would be refused again.
                    if response.is_client_error and response.status_code not in (408, 429):
                        break
                except Exception as exc:  # transport errors, bad URL...: reported, never raised
                    result.webhook_error = f"{type(exc).__name__}: {exc}"
                if attempt < self.attempts:
                    self._sleep(self.backoff_s * 2 ** (attempt - 1))
        finally:
            if self._http is None:
                client.close()
        result.webhook = "failed"
        logger.warning(
            "notification %s not delivered to webhook %s after %d attempt(s): %s",
            result.notification.kind,
            where,
            result.webhook_attempts,
            result.webhook_error,
        )

    def notifications(self, user_id: str, limit: int = 50) -> list[Notification]:
        """The latest `limit` notifications of a user, newest first (unreadable entries skipped)."""
        if limit < 1:
            return []
        found = []
        for item in self.client.lrange(self.key(user_id), 0, limit - 1):
            try:
                found.append(Notification.model_validate_json(item))
            except ValidationError:
                continue
        return found
