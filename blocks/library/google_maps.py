"""GoogleMapsSearchBlock (AutoGPT blocks/google_maps.py): local businesses through Google's Places API.

Like AutoGPT it uses the `googlemaps` client: a text search (`client.places(query, radius,
page_token)`, GET /maps/api/place/textsearch/json), page after page (`next_page_token`) until
`max_results` places are found or there are no more pages, and for each result its place details
(`client.place(place_id)`, GET /maps/api/place/details/json). Every place is yielded on `place`
(name, address, phone, rating, reviews, website) once the whole search has succeeded; any failure
yields only `error`, as AutoGPT's raised error would.

Where the API key and the base URL come from, first match wins:

1. the node's credential (pin `credentials`, provider "google_maps", type api_key, as AutoGPT), resolved
   by the engine: the secret is the API key, or JSON `{"api_key": ..., "base_url": ...}`;
2. the environment, read when the node runs: AGENTFLOW_GOOGLE_MAPS_BASE_URL and (only for a node without a
   credential) AGENTFLOW_GOOGLE_MAPS_API_KEY;
3. Google's https://maps.googleapis.com (the client's own default).

The base URL (Google's too) follows the outbound policy (blocks/outbound): its host is resolved once
and a private, loopback or otherwise non-public address is refused unless
`ctx.settings["allow_private_addresses"]`; the requests then go to the checked address (Host header and
TLS server name keep the original host), without following redirects or environment proxies.

Time limits (the client has none by default and retries 5xx answers and OVER_QUERY_LIMIT with growing
sleeps until its retry timeout): 10 s to connect, AGENTFLOW_GOOGLE_MAPS_TIMEOUT seconds to read an answer
(default 30), AGENTFLOW_GOOGLE_MAPS_RETRY_TIMEOUT seconds across one call's retries (default 60, the
client's). The client runs in a worker thread, so the event loop is never blocked.

The API key travels in the query string (`key=`), so every error text is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, Field, SecretStr

from blocks.outbound import (
    ConnectsOut,
    OutboundPolicy,
    RequestRefused,
    fixed_resolve,
    normalise_url,
    pinned_requests_session,
)
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    Credentials,
    CredentialsField,
    RetryPolicy,
    RunContext,
)

DEFAULT_BASE_URL = "https://maps.googleapis.com"
BASE_URL_VAR = "AGENTFLOW_GOOGLE_MAPS_BASE_URL"
API_KEY_VAR = "AGENTFLOW_GOOGLE_MAPS_API_KEY"
TIMEOUT_VAR = "AGENTFLOW_GOOGLE_MAPS_TIMEOUT"
RETRY_TIMEOUT_VAR = "AGENTFLOW_GOOGLE_MAPS_RETRY_TIMEOUT"
CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_RETRY_TIMEOUT = 60.0


class Place(BaseModel):
    name: str
    address: str
    phone: str
    rating: float
    reviews: int
    website: str


@dataclass(frozen=True)
class MapsEndpoint:
    base_url: str
    api_key: SecretStr
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT

    def scrub(self, text: str) -> str:
        key = self.api_key.get_secret_value()
        if len(key) < 4:
            return text
        for form in {key, quote(key, safe=""), quote_plus(key)}:
            text = text.replace(form, "***")
        return text


def _seconds(raw: str | None, name: str, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {raw!r}")
    return value


def resolve_google_maps(ctx: RunContext) -> MapsEndpoint:
    """The API key and base URL for this node execution (see the module docstring)."""
    env = os.environ
    data: dict[str, Any] = {}
    credential: Credentials | None = ctx.credentials.get("credentials")
    if credential is not None:
        secret = credential.secret.get_secret_value()
        try:
            parsed = json.loads(secret)
        except ValueError:
            parsed = None
        data = parsed if isinstance(parsed, dict) else {"api_key": secret.strip()}
    base_url = str(data.get("base_url") or env.get(BASE_URL_VAR) or DEFAULT_BASE_URL).strip().rstrip("/")
    key = str(data.get("api_key") or (env.get(API_KEY_VAR, "") if credential is None else "")).strip()
    return MapsEndpoint(
        base_url=base_url,
        api_key=SecretStr(key),
        read_timeout=_seconds(env.get(TIMEOUT_VAR), TIMEOUT_VAR, DEFAULT_READ_TIMEOUT),
        retry_timeout=_seconds(env.get(RETRY_TIMEOUT_VAR), RETRY_TIMEOUT_VAR, DEFAULT_RETRY_TIMEOUT),
    )


@dataclass(frozen=True)
class Target:
    """Where the client sends its requests: `base_url` (a checked IP for a non-default base URL), the
    Host header to keep, and the TLS server name to verify (https to a pinned IP)."""

    base_url: str
    host_header: str | None = None
    server_hostname: str | None = None


def _describe(exc: BaseException, endpoint: MapsEndpoint) -> str:
    """A clear error text for a failed search, without the API key."""
    import googlemaps.exceptions as gm

    if isinstance(exc, gm.ApiError | gm.HTTPError):
        # e.g. "REQUEST_DENIED (The provided API key is invalid.)", "HTTP Error: 302"
        detail = f"the API answered {exc}"
    elif isinstance(exc, gm.Timeout):
        detail = (
            "no successful answer in time (a request timed out, or the API kept failing until the "
            f"{endpoint.retry_timeout:g}s retry timeout)"
        )
    elif isinstance(exc, gm.TransportError):
        detail = f"could not reach {endpoint.base_url}: {exc}"
    elif isinstance(exc, ValueError):
        detail = str(exc)  # e.g. the client's "Invalid API key provided." (a key not starting AIza)
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return endpoint.scrub(f"Google Maps search failed: {detail}")


# A fake client for the self-tests: answers like the API from a list of (name, details) per page.
class _FakeClient:
    def __init__(
        self, pages: list[list[dict[str, Any]]], error: Callable[[], Exception] | None = None
    ) -> None:
        self.pages = pages
        self.error = error
        self.calls: list[tuple[str, Any]] = []

    def places(self, query: str, radius: int, page_token: str | None = None) -> dict[str, Any]:
        self.calls.append(("places", (query, radius, page_token)))
        if self.error is not None:
            raise self.error()
        index = int(page_token or 0)
        answer: dict[str, Any] = {
            "status": "OK",
            "results": [{"place_id": d["name"]} for d in self.pages[index]],
        }
        if index + 1 < len(self.pages):
            answer["next_page_token"] = str(index + 1)
        return answer

    def place(self, place_id: str) -> dict[str, Any]:
        self.calls.append(("place", place_id))
        details = next(d for page in self.pages for d in page if d["name"] == place_id)
        return {"status": "OK", "result": details}


def _fake_client(
    pages: list[list[dict[str, Any]]], error: Callable[[], Exception] | None = None
) -> Callable[..., Any]:
    return lambda endpoint, target: _FakeClient(pages, error)


def _api_error(status: str, message: str) -> Callable[[], Exception]:
    """The client's ApiError, made when raised (googlemaps is imported on first use)."""

    def make() -> Exception:
        import googlemaps.exceptions as gm

        return gm.ApiError(status, message)

    return make


TEST_CREDENTIALS = Credentials(
    id="01234567-89ab-cdef-0123-456789abcdef",
    provider="google_maps",
    type="api_key",
    secret=SecretStr("AIzaMockGoogleMapsApiKey0123456789"),
    owner_user_id="local",
    title="Mock Google Maps API key",
)
_RESTAURANT = {
    "name": "Test Restaurant",
    "formatted_address": "123 Test St, New York, NY 10001",
    "formatted_phone_number": "+1 (555) 123-4567",
    "rating": 4.5,
    "user_ratings_total": 100,
    "website": "https://testrestaurant.com",
}
_PLACE = {
    "name": "Test Restaurant",
    "address": "123 Test St, New York, NY 10001",
    "phone": "+1 (555) 123-4567",
    "rating": 4.5,
    "reviews": 100,
    "website": "https://testrestaurant.com",
}


class GoogleMapsSearchBlock(ConnectsOut, Block):
    id = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
    description = "This block searches for local businesses using Google Maps API."
    categories = frozenset({BlockCategory.SEARCH})
    credentials = (
        CredentialsField(
            "credentials", provider="google_maps", type="api_key", optional=True, env_fallback=API_KEY_VAR
        ),
    )
    repeated_output_pins = frozenset({"place"})
    # The client retries 5xx answers and OVER_QUERY_LIMIT itself; these failures are the provider's
    # (what its circuit breaker counts), a refused key or request is not.
    retry_policy = RetryPolicy(
        attempts=1,
        retry_on_errors=("HTTP Error: 5", "no successful answer in time", "could not reach", "UNKNOWN_ERROR"),
    )

    class Input(BlockInput):
        credentials: Any = Field(default=None, description="Google Maps API Key")
        query: str = Field(
            description="Search query for local businesses",
            json_schema_extra={"placeholder": "e.g., 'restaurants in New York'"},
        )
        radius: int = Field(default=5000, ge=1, le=50000, description="Search radius in meters (max 50000)")
        max_results: int = Field(
            default=20, ge=1, le=60, description="Maximum number of results to return (max 60)"
        )

    class Output(BlockOutput):
        place: Place = Field(description="Place found")
        error: str = Field(default="", description="Error message if the search failed")

    self_tests = (
        BlockSelfTest(
            input={"query": "restaurants in new york", "radius": 5000, "max_results": 5},
            output=[("place", _PLACE)],
            mocks={"_resolve": fixed_resolve(), "_make_client": _fake_client([[_RESTAURANT]])},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(  # pages until max_results; a place without phone or website gets ""
            input={"query": "cafes", "max_results": 3},
            output=[
                ("place", lambda p: p["name"] == "A"),
                ("place", lambda p: p["name"] == "B"),
                (
                    "place",
                    {"name": "C", "address": "", "phone": "", "rating": 0.0, "reviews": 0, "website": ""},
                ),
            ],
            mocks={
                "_resolve": fixed_resolve(),
                "_make_client": _fake_client(
                    [
                        [{**_RESTAURANT, "name": "A"}, {**_RESTAURANT, "name": "B"}],
                        [{"name": "C"}, {"name": "D"}],
                    ]
                ),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"query": "x"},
            output=[("error", lambda e: "REQUEST_DENIED" in e and "AIzaMock" not in e)],
            mocks={
                "_resolve": fixed_resolve(),
                "_make_client": _fake_client(
                    [], _api_error("REQUEST_DENIED", "key AIzaMockGoogleMapsApiKey0123456789 is invalid")
                ),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"query": "x"},
            output=[("error", lambda e: "10.0.0.7" in e and "allow_private_addresses" in e)],
            mocks={"_resolve": lambda host, port: _resolved("10.0.0.7")},
            credentials={
                "credentials": Credentials(
                    "c",
                    "google_maps",
                    "api_key",
                    SecretStr(json.dumps({"api_key": "AIzaK", "base_url": "https://maps.internal.example"})),
                    "local",
                )
            },
        ),
    )

    # --- I/O helpers: self-tests replace these ---------------------------------------------------------
    def _make_client(self, endpoint: MapsEndpoint, target: Target) -> Any:
        """The googlemaps client for this search (ValueError for a key it rejects)."""
        import googlemaps

        session = pinned_requests_session(target.server_hostname)
        headers = {"Host": target.host_header} if target.host_header else {}
        return googlemaps.Client(
            key=endpoint.api_key.get_secret_value(),
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=endpoint.read_timeout,
            retry_timeout=endpoint.retry_timeout,  # type: ignore[arg-type]  # seconds; a float works
            requests_kwargs={"headers": headers, "allow_redirects": False},
            requests_session=session,
            base_url=target.base_url,
        )

    # --- logic -----------------------------------------------------------------------------------------
    async def _target(self, endpoint: MapsEndpoint, allow_private: bool) -> Target:
        url = normalise_url(endpoint.base_url)
        pinned, sni = await OutboundPolicy(self._resolve, allow_private, self._is_blocked).pin(url)
        host_header = url.netloc.decode("ascii") if pinned.host != url.host else None
        return Target(str(pinned).rstrip("/"), host_header, sni)

    def search_places(self, client: Any, query: str, radius: int, max_results: int) -> list[Place]:
        """AutoGPT's loop: text search pages until `max_results`, place details for each result."""
        results: list[Place] = []
        next_page_token = None
        while len(results) < max_results:
            response = client.places(query=query, radius=radius, page_token=next_page_token)
            for place in response.get("results") or []:
                if len(results) >= max_results:
                    break
                details = client.place(place["place_id"])["result"]
                results.append(
                    Place(
                        name=details.get("name", ""),
                        address=details.get("formatted_address", ""),
                        phone=details.get("formatted_phone_number", ""),
                        rating=details.get("rating", 0),
                        reviews=details.get("user_ratings_total", 0),
                        website=details.get("website", ""),
                    )
                )
            next_page_token = response.get("next_page_token")
            if not next_page_token:
                break
        return results

    def _search(self, endpoint: MapsEndpoint, target: Target, input: Any) -> list[Place]:
        client = self._make_client(endpoint, target)
        try:
            return self.search_places(client, input.query, input.radius, input.max_results)
        finally:
            session = getattr(client, "session", None)
            if session is not None and hasattr(session, "close"):
                session.close()

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_google_maps(ctx)
        except ValueError as exc:
            yield "error", str(exc)
            return
        if not endpoint.api_key.get_secret_value():
            where = (
                "its google_maps credential holds none"
                if ctx.credentials.get("credentials") is not None
                else f"give the node a google_maps credential, or set {API_KEY_VAR}"
            )
            yield "error", f"Google Maps search failed: no API key ({where})"
            return
        try:
            target = await self._target(endpoint, bool(ctx.settings.get("allow_private_addresses")))
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        try:
            places = await asyncio.to_thread(self._search, endpoint, target, input)
        except Exception as exc:
            yield "error", _describe(exc, endpoint)
            return
        for place in places:
            yield "place", place


async def _resolved(address: str) -> list[str]:
    return [address]
