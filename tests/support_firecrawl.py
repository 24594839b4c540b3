"""A local stand-in for Firecrawl's v2 REST API on 127.0.0.1 (what firecrawl-py 4 speaks).

Header `Authorization: Bearer <key>`; a wrong key: 401 {"success": false, "error": "Unauthorized: Invalid
token"}. Every request is recorded in `requests` as {"method", "path", "query", "headers", "body"}.
Answers are deterministic (derived from the request):

  POST /v2/crawl {url, limit, scrapeOptions}  -> {"success": true, "id", "url"}
  GET  /v2/crawl/<id>[?skip=N]                -> "scraping" for `polls_to_finish` polls, then "completed"
       with min(limit, PAGES_PER_CRAWL) pages, PAGE_SIZE a page, `next` naming the following page. A page
       has the requested formats (markdown, html, rawHtml, links, screenshot, json, changeTracking) and
       metadata {sourceURL, title, statusCode}. A URL containing "fail-crawl" ends "failed".
  POST /v2/extract {urls, prompt, schema, enableWebSearch} -> {"success": true, "id"}
  GET  /v2/extract/<id>                       -> "processing" for `polls_to_finish` polls, then "completed"
       with data {"answer", "sources"} (or, with a schema, one "<property>: <url>" string per property).
       A prompt containing "fail-extract" ends "failed".
  POST /v2/map {url}                          -> {"success": true, "links": [{url, title, description}]}
  A crawl URL, extract prompt or map URL containing "server-fail": 500 whose body echoes the key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support_servers import RecordingServer, StandInHandler

FIRECRAWL_KEY = "fc-SECRET-5772-do-not-leak"
PAGES_PER_CRAWL = 3
PAGE_SIZE = 2


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class _Handler(StandInHandler):
    def _handle(self) -> None:
        server: FirecrawlServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.read_body()
        parts = urlsplit(self.path)
        request = {
            "method": self.command,
            "path": parts.path,
            "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
            "headers": self.header_dict(),
            "body": json.loads(raw) if raw else None,
        }
        server.record(request)
        status, payload = server.answer(request)
        self.send_json(status, payload)

    do_GET = _handle
    do_POST = _handle
    do_DELETE = _handle


class FirecrawlServer(RecordingServer):
    def __init__(self, key: str = FIRECRAWL_KEY, polls_to_finish: int = 1) -> None:
        super().__init__(_Handler)
        self.key = key
        self.polls_to_finish = polls_to_finish
        self.jobs: dict[str, dict[str, Any]] = {}

    def _reset_state(self) -> None:
        self.jobs.clear()

    def answer(self, request: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            if request["headers"].get("authorization") != f"Bearer {self.key}":
                return 401, {"success": False, "error": "Unauthorized: Invalid token"}
            method, path, body = request["method"], request["path"], request["body"] or {}
            if method == "POST" and path == "/v2/crawl":
                return self._start(
                    "crawl", body, str(body.get("url", "")), f"{self.url}/v2/crawl/", with_url=True
                )
            if method == "POST" and path == "/v2/extract":
                return self._start("extract", body, str(body.get("prompt") or ""), "")
            if method == "GET" and path.startswith("/v2/crawl/"):
                return self._crawl_status(
                    path.removeprefix("/v2/crawl/"), int(request["query"].get("skip", 0))
                )
            if method == "GET" and path.startswith("/v2/extract/"):
                return self._extract_status(path.removeprefix("/v2/extract/"))
            if method == "POST" and path == "/v2/map":
                return self._map(str(body.get("url", "")))
            return 404, {"success": False, "error": f"no route {method} {path}"}

    # --- jobs ------------------------------------------------------------------------------------------
    def _start(
        self, kind: str, body: dict[str, Any], probe: str, url_prefix: str, with_url: bool = False
    ) -> tuple[int, Any]:
        if "server-fail" in probe:
            return 500, {"success": False, "error": f"internal failure for key {self.key}"}
        if kind == "crawl" and not body.get("url"):
            return 400, {"success": False, "error": "Bad Request", "details": "url is required"}
        if kind == "extract" and not body.get("urls"):
            return 400, {"success": False, "error": "Bad Request", "details": "urls must not be empty"}
        job_id = f"{kind}-{_digest(body)}"
        self.jobs[job_id] = {"kind": kind, "body": body, "polls": 0}
        answer: dict[str, Any] = {"success": True, "id": job_id}
        if with_url:
            answer["url"] = f"{url_prefix}{job_id}"
        return 200, answer

    def _job(self, job_id: str, kind: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job["kind"] == kind else None

    def _crawl_status(self, job_id: str, skip: int) -> tuple[int, Any]:
        job = self._job(job_id, "crawl")
        if job is None:
            return 404, {"success": False, "error": "Job not found"}
        body = job["body"]
        url = str(body["url"])
        total = min(int(body.get("limit") or 10), PAGES_PER_CRAWL)
        if skip == 0:
            job["polls"] += 1
        if job["polls"] <= self.polls_to_finish:
            return 200, {"success": True, "status": "scraping", "completed": 0, "total": total, "data": []}
        if "fail-crawl" in url:
            return 200, {"success": True, "status": "failed", "completed": 0, "total": total, "data": []}
        formats = (body.get("scrapeOptions") or {}).get("formats") or ["markdown"]
        pages = [self._page(url, i, formats) for i in range(total)]
        chunk = pages[skip : skip + PAGE_SIZE]
        answer: dict[str, Any] = {
            "success": True,
            "status": "completed",
            "completed": total,
            "total": total,
            "creditsUsed": total,
            "expiresAt": "2030-01-01T00:00:00.000Z",
            "data": chunk,
        }
        if skip + PAGE_SIZE < total:
            answer["next"] = f"{self.url}/v2/crawl/{job_id}?skip={skip + PAGE_SIZE}"
        return 200, answer

    @staticmethod
    def _page(url: str, index: int, formats: list[Any]) -> dict[str, Any]:
        page_url = url.rstrip("/") + ("/" if index == 0 else f"/page-{index}")
        names = {
            f if isinstance(f, str) else f"{f.get('type')}{'@fullPage' if f.get('fullPage') else ''}"
            for f in formats
        }
        page: dict[str, Any] = {
            "metadata": {"sourceURL": page_url, "url": page_url, "title": f"Page {index}", "statusCode": 200}
        }
        if "markdown" in names:
            page["markdown"] = f"# Page {index}\n\nContent of {page_url}"
        if "html" in names:
            page["html"] = f"<h1>Page {index}</h1>"
        if "rawHtml" in names:
            page["rawHtml"] = f"<html><body><h1>Page {index}</h1></body></html>"
        if "links" in names:
            page["links"] = [f"{page_url}#a", f"{page_url}#b"]
        if "screenshot" in names or "screenshot@fullPage" in names:
            page["screenshot"] = f"https://screenshots.example/{_digest(page_url, sorted(names))}.png"
        if "json" in names:
            page["json"] = {"title": f"Page {index}"}
        if "changeTracking" in names:
            page["changeTracking"] = {"changeStatus": "new", "visibility": "visible"}
        return page

    def _extract_status(self, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id, "extract")
        if job is None:
            return 404, {"success": False, "error": "Extract job not found"}
        job["polls"] += 1
        if job["polls"] <= self.polls_to_finish:
            return 200, {"success": True, "status": "processing"}
        body = job["body"]
        prompt = str(body.get("prompt") or "")
        if "fail-extract" in prompt:
            return 200, {"success": False, "status": "failed", "error": "Extraction failed for all URLs"}
        urls = [str(u) for u in body.get("urls") or []]
        schema = body.get("schema")
        if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
            data: dict[str, Any] = {name: f"{name}: {urls[0]}" for name in schema["properties"]}
        else:
            data = {"answer": f"Answer to {prompt!r} from {len(urls)} URL(s)", "sources": urls}
        return 200, {
            "success": True,
            "status": "completed",
            "data": data,
            "expiresAt": "2030-01-01T00:00:00Z",
        }

    def _map(self, url: str) -> tuple[int, Any]:
        if "server-fail" in url:
            return 500, {"success": False, "error": f"internal failure for key {self.key}"}
        if not url:
            return 400, {"success": False, "error": "Bad Request", "details": "url is required"}
        root = url.rstrip("/")
        links = [{"url": f"{root}/", "title": "Home", "description": f"The home page of {root}"}]
        links += [{"url": f"{root}/{name}", "title": name.title()} for name in ("docs", "pricing")]
        return 200, {"success": True, "links": links}
