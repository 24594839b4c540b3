"""Request claims: which listener turns a request id into a run.

Dagster deduplicates run keys per sensor only, so with several listener sensors a request id seen
twice (a producer's retry, or an entry reclaimed from a listener that stalled) could become two runs.
The first listener to see an id claims it atomically (SET NX, kept `ttl_s`); only the holder ever
issues the id's run request. The holder may issue it again (after a crash between claim and run),
because its own run key makes that a no-op in Dagster; another listener never does, since it cannot
tell whether the holder's tick will still create the run (Dagster resumes interrupted ticks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    import redis

DEFAULT_CLAIM_TTL_S = 30 * 24 * 3600


class RequestClaim(BaseModel):
    """Who claimed a request id: the listener (sensor name), the stream entry, what was asked."""

    holder: str
    entry_id: str
    digest: str
    at: str = ""


class RequestClaims:
    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int = DEFAULT_CLAIM_TTL_S):
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1, got {ttl_s}")
        self.client = client
        self.key_prefix = f"{prefix}:request_claims:"
        self.ttl_s = ttl_s

    def key(self, request_id: str) -> str:
        return self.key_prefix + request_id

    def take(self, request_id: str, holder: str, entry_id: str, digest: str) -> RequestClaim:
        """Claim the id for `holder`, or return the claim someone already holds."""
        mine = RequestClaim(holder=holder, entry_id=entry_id, digest=digest, at=datetime.now(UTC).isoformat())
        for _ in range(3):  # the other claim may expire between SET and GET
            if self.client.set(self.key(request_id), mine.model_dump_json(), nx=True, ex=self.ttl_s):
                return mine
            held = self.get(request_id)
            if held is not None:
                return held
        raise RuntimeError(f"request {request_id}: its claim keeps changing")

    def get(self, request_id: str) -> RequestClaim | None:
        value = self.client.get(self.key(request_id))
        if value is None:
            return None
        try:
            return RequestClaim.model_validate_json(value)
        except ValidationError:  # written by someone else: nobody we know holds it
            return RequestClaim(holder="(unknown)", entry_id="", digest="")
