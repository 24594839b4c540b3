"""A local stand-in for Google's Places API web service (the legacy JSON endpoints the `googlemaps`
client calls), on 127.0.0.1, answering deterministically in Google's response shapes.

GET /maps/api/place/textsearch/json?query=...&radius=...&key=...[&pagetoken=...]
    `{"html_attributions": [], "results": [...], "status": "OK", "next_page_token": "..."}`: pages of 20,
    at most 60 results in all (Google's limits). A query has `default_count` results (45: pages of 20,
    20 and 5) unless `counts[query]` says otherwise. With `pagetoken`, the other parameters are ignored,
    as Google does; an unknown token is INVALID_REQUEST.
GET /maps/api/place/details/json?placeid=...&key=...
    `{"html_attributions": [], "result": {...}, "status": "OK"}`; an unknown place id is NOT_FOUND.

Result i (from 1) of query q: name "<q title-cased> #i", address "i High Street, Testville", phone
"0131 496 <i:04d>", rating 3.0 + (i % 20) / 10, user_ratings_total 10 * i, website
"https://place-i.example.com" - except that every third place has no phone and no website (Google then
leaves the fields out). Place ids and page tokens encode the query and the position, so the server
keeps no state but its request log.

Failures, in Google's shapes (HTTP 200 with an error status unless said otherwise):
- a key other than `api_key`: REQUEST_DENIED, "The provided API key is invalid." (what Google says);
- a query containing "denied": REQUEST_DENIED, "This API project is not authorized to use this API.";
- "zero results": ZERO_RESULTS with no results;
- "over limit": OVER_QUERY_LIMIT (the client retries it until its retry timeout);
- "server error": HTTP 500 (the client retries it until its retry timeout);
- "broken details": the details of result 2 are NOT_FOUND;
- "redirect": HTTP 302 to a link-local address (a client must not follow it);
- "slow": the answer comes after `slow_seconds` (for read timeouts).
Every request is recorded in `requests` as {"path", "params", "headers"} (params as a dict).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support_servers import RecordingServer, StandInHandler

TEST_MAPS_KEY = "AIzaSyTEST-maps-SECRET-4242-do-not-leak"
PAGE_SIZE = 20
MAX_RESULTS = 60


def _encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def _decode(token: str) -> list[Any] | None:
    try:
        parts = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return parts if isinstance(parts, list) else None


def place_id(query: str, index: int) -> str:
    return "ChIJ" + _encode(query, index)


def details_for(query: str, index: int) -> dict[str, Any]:
    """The full details of result `index` (from 1) of `query`, as Google's details `result`."""
    details: dict[str, Any] = {
        "business_status": "OPERATIONAL",
        "formatted_address": f"{index} High Street, Testville",
        "geometry": {"location": {"lat": 55.95 + index / 1000, "lng": -3.19 - index / 1000}},
        "name": f"{query.title()} #{index}",
        "place_id": place_id(query, index),
        "rating": round(3.0 + (index % 20) / 10, 1),
        "types": ["cafe", "food", "point_of_interest", "establishment"],
        "url": f"https://maps.google.com/?cid={1000 + index}",
        "user_ratings_total": 10 * index,
        "utc_offset": 0,
    }
    if index % 3:
        details["formatted_phone_number"] = f"0131 496 {index:04d}"
        details["international_phone_number"] = f"+44 131 496 {index:04d}"
        details["website"] = f"https://place-{index}.example.com"
    return details


def expected_place(query: str, index: int) -> dict[str, Any]:
    """What GoogleMapsSearchBlock yields for result `index` of `query`."""
    details = details_for(query, index)
    return {
        "name": details["name"],
        "address": details["formatted_address"],
        "phone": details.get("formatted_phone_number", ""),
        "rating": details["rating"],
        "reviews": details["user_ratings_total"],
        "website": details.get("website", ""),
    }


def _search_entry(query: str, index: int) -> dict[str, Any]:
    details = details_for(query, index)
    keys = ("business_status", "formatted_address", "geometry", "name", "place_id", "rating", "types")
    return {**{k: details[k] for k in keys}, "user_ratings_total": details["user_ratings_total"]}


class _MapsHandler(StandInHandler):
    def do_GET(self) -> None:
        server: GoogleMapsStyleServer = self.server.owner  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        server.record({"path": split.path, "params": params, "headers": self.header_dict()})
        if split.path == "/maps/api/place/textsearch/json":
            status, body = server.text_search(params)
        elif split.path == "/maps/api/place/details/json":
            status, body = server.details(params)
        else:
            status, body = 404, {"error_message": f"no route {split.path}", "status": "NOT_FOUND"}
        self.send_data(
            status,
            json.dumps(body).encode(),
            "application/json; charset=UTF-8",
            {"Location": body["location"]} if status == 302 else None,
        )


def _error(status: str, message: str | None = None, results_key: str | None = "results") -> dict[str, Any]:
    """Google's error shape: a search keeps an empty `results`; details have no `result`."""
    body: dict[str, Any] = {"html_attributions": [], **({results_key: []} if results_key else {})}
    if message:
        body["error_message"] = message
    body["status"] = status
    return body


class GoogleMapsStyleServer(RecordingServer):
    def __init__(self, api_key: str = TEST_MAPS_KEY, default_count: int = 45) -> None:
        super().__init__(_MapsHandler)
        self.api_key = api_key
        self.default_count = default_count
        self.slow_seconds = 1.0
        self.counts: dict[str, int] = {}

    def _reset_state(self) -> None:
        self.counts.clear()
        self.slow_seconds = 1.0

    def paths(self) -> list[str]:
        with self._lock:
            return [r["path"].rsplit("/", 2)[-2] for r in self.requests]

    def _key_problem(self, params: dict[str, str], results_key: str | None) -> dict[str, Any] | None:
        if params.get("key") != self.api_key:
            return _error("REQUEST_DENIED", "The provided API key is invalid.", results_key)
        return None

    def text_search(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if (problem := self._key_problem(params, "results")) is not None:
            return 200, problem
        if "pagetoken" in params:
            parts = _decode(params["pagetoken"])
            if not parts or len(parts) != 2:
                return 200, _error("INVALID_REQUEST")
            query, offset = str(parts[0]), int(parts[1])
        else:
            query, offset = params.get("query", ""), 0
            if not query:
                return 200, _error("INVALID_REQUEST")
        if "slow" in query:
            time.sleep(self.slow_seconds)
        if "redirect" in query:
            return 302, {"location": "http://169.254.169.254/latest/meta-data/"}
        if "server error" in query:
            return 500, {"error_message": "Internal error", "status": "UNKNOWN_ERROR"}
        if "over limit" in query:
            return 200, _error("OVER_QUERY_LIMIT", "You have exceeded your rate-limit for this API.")
        if "denied" in query:
            return 200, _error("REQUEST_DENIED", "This API project is not authorized to use this API.")
        if "zero results" in query:
            return 200, _error("ZERO_RESULTS")
        with self._lock:
            total = min(MAX_RESULTS, self.counts.get(query, self.default_count))
        end = min(total, offset + PAGE_SIZE)
        body: dict[str, Any] = {
            "html_attributions": [],
            "results": [_search_entry(query, i) for i in range(offset + 1, end + 1)],
            "status": "OK" if end > offset else "ZERO_RESULTS",
        }
        if end < total:
            body["next_page_token"] = _encode(query, end)
        return 200, body

    def details(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if (problem := self._key_problem(params, None)) is not None:
            return 200, problem
        pid = params.get("placeid") or params.get("place_id") or ""
        parts = _decode(pid[4:]) if pid.startswith("ChIJ") else None
        if not parts or len(parts) != 2:
            return 200, _error("INVALID_REQUEST" if not pid else "NOT_FOUND", None, None)
        query, index = str(parts[0]), int(parts[1])
        if "broken details" in query and index == 2:
            return 200, _error("NOT_FOUND", None, None)
        return 200, {"html_attributions": [], "result": details_for(query, index), "status": "OK"}


# --- the Decision Maker Lead Finder export (agent_6e16e65a-...) ---------------------------------------
def ceo_finder_rules(
    query: str = "coffee roasters in Edinburgh", count: int = 3
) -> list[tuple[str, list[dict[str, Any]]]]:
    """ScriptedLLMServer rules for the export's CEO finder (a SmartDecisionMaker in its "Find Business
    CEO" sub-agent), one per Google Maps result: a web search first (a tool call to its Web Search
    sub-agent), then the answer in the <identified_owner_ceo> XML that the graph's XMLParser reads.
    The business reaches the prompt as the place's JSON, so `"name": "<name>"` matches only the CEO
    finder's requests (the web search's prompt is the question alone)."""
    rules = []
    for index in range(1, count + 1):
        name = expected_place(query, index)["name"]
        search = {"name": "web_search", "arguments": {"question": f"Who owns business {index}?"}}
        answer = f"<identified_owner_ceo>\nName: Owner {index}\nPosition: CEO\n</identified_owner_ceo>"
        rules.append((f'"name": "{name}"', [{"tool_calls": [search]}, {"content": answer}]))
    return rules
