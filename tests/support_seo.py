"""Local stand-ins for DataForSEO Labs and the WordPress.com REST API on 127.0.0.1, speaking each wire
protocol. Every answer is deterministic (derived from the request); every request is recorded in
`requests` as {"method", "path", "query", "headers" (lower-case names), "body"}.

`DataForSeoServer` (HTTP basic auth `login:password`):
  POST /v3/dataforseo_labs/google/related_keywords/live
  POST /v3/dataforseo_labs/google/keyword_suggestions/live
  body: a JSON array of one task {keyword, location_code, language_code, include_seed_keyword,
  include_serp_info, include_clickstream_data, limit, depth (related keywords)}.
  -> 200 DataForSEO's envelope {"version", "status_code": 20000, "status_message": "Ok.", "time", "cost",
  "tasks_count", "tasks_error", "tasks": [{"id", "status_code", "status_message", "path", "data",
  "result": [{"seed_keyword", "location_code", "language_code", "total_count", "items_count",
  "items": [...]}]}]}. Related-keyword items are {"se_type", "keyword_data": {keyword, keyword_info,
  keyword_properties, serp_info?, clickstream_keyword_info?}, "depth", "related_keywords"}: the seed at
  depth 0, then RELATED_PER_LEVEL keywords per depth level. Suggestion items are the keyword data
  themselves: SUGGESTIONS keywords that contain the seed. Both are capped at `limit`.
  A wrong or missing login: HTTP 401 with status_code 40100 and no tasks. A keyword containing
  "task-error": HTTP 200, tasks_error 1, the task's status_code 40501 ("Invalid Field: 'keyword'.").
  A keyword containing "no-results": the task succeeds with `result: null`.

`WordPressServer` (WordPress.com REST v1.1):
  GET  /rest/v1.1/sites/<site>/posts/        public: {"found", "posts": [...], "meta"}, newest first
  POST /rest/v1.1/sites/<site>/posts/new     header `Authorization: Bearer <token>`, form-encoded
       {title, content, excerpt, slug, author, status, sticky, type, categories, tags (comma-joined),
       featured_image (an attachment ID, or a URL the server "sideloads"), media_urls, publicize,
       sharing_enabled} -> 200 the post as WordPress.com answers it (ID, site_ID, author, date, URL,
       short_URL, content, status, categories, tags, attachments, post_thumbnail, ...).
  Every site is known that is a `<name>.wordpress.com` domain or a number; others answer 404
  {"error": "unknown_blog"}. A wrong or missing token: 401 {"error": "invalid_token", "message":
  "The OAuth2 token is invalid."}. A post without title and content: 400; a title containing
  "server-fail": 500 whose body echoes the token it was sent.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from support_servers import RecordingServer, StandInHandler

from agent_defs.graph import Graph

# The logins each server accepts (and the tests' credentials hold): never in any output.
DATAFORSEO_LOGIN = "seo-team@example.com"
DATAFORSEO_PASSWORD = "d4tafor5eo-SECRET-7071-do-not-leak"
WORDPRESS_TOKEN = "wpcom-SECRET-6626-do-not-leak"

RELATED_PATH = "/v3/dataforseo_labs/google/related_keywords/live"
SUGGESTIONS_PATH = "/v3/dataforseo_labs/google/keyword_suggestions/live"
RELATED_PER_LEVEL = 4
SUGGESTIONS = 6
_MODIFIERS = ("tools", "guide", "examples", "for beginners", "strategy", "checklist", "tips", "software")
# Every site starts with these posts (newest first once listed).
SEED_POSTS = ("Welcome to the blog", "Ten automation ideas for small teams")


def _number(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8], 16)


class _Handler(StandInHandler):
    def _handle(self) -> None:
        server: _SeoServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.read_body()
        headers = self.header_dict()
        path, _, query = self.path.partition("?")
        server.record({"method": self.command, "path": path, "query": query, "headers": headers, "body": raw})
        status, payload = server.answer(self.command, path, headers, raw)
        self.send_json(status, payload)

    do_GET = _handle
    do_POST = _handle


class _SeoServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__(_Handler)

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:  # pragma: no cover - every server overrides it
        raise NotImplementedError


# --- DataForSEO ---------------------------------------------------------------------------------------
class DataForSeoServer(_SeoServer):
    def __init__(self, login: str = DATAFORSEO_LOGIN, password: str = DATAFORSEO_PASSWORD) -> None:
        super().__init__()
        self.login = login
        self.password = password

    def _authorised(self, headers: dict[str, str]) -> bool:
        expected = base64.b64encode(f"{self.login}:{self.password}".encode()).decode()
        return headers.get("authorization") == f"Basic {expected}"

    @staticmethod
    def _envelope(
        tasks: list[dict[str, Any]] | None, status: int = 20000, message: str = "Ok."
    ) -> dict[str, Any]:
        return {
            "version": "0.1.20240801",
            "status_code": status,
            "status_message": message,
            "time": "0.0912 sec.",
            "cost": 0.0101 * len(tasks or []),
            "tasks_count": len(tasks or []),
            "tasks_error": sum(1 for t in tasks or [] if t["status_code"] != 20000),
            "tasks": tasks,
        }

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if method != "POST" or path not in (RELATED_PATH, SUGGESTIONS_PATH):
            return 404, self._envelope(None, 40400, "Not Found.")
        if not self._authorised(headers):
            return 401, self._envelope(
                None,
                40100,
                "You are not authorized to access this resource. Please check your login and password.",
            )
        try:
            tasks = json.loads(raw)
        except ValueError:
            return 400, self._envelope(None, 40000, "Invalid JSON in the POST body.")
        if not isinstance(tasks, list) or not tasks or not isinstance(tasks[0], dict):
            return 400, self._envelope(None, 40503, "POST Data Is Empty or Invalid.")
        task = tasks[0]
        function = "related_keywords" if path == RELATED_PATH else "keyword_suggestions"
        keyword = str(task.get("keyword") or "")
        answered: dict[str, Any] = {
            "id": f"07191200-{_number(task) % 10000:04d}-0542-0000-{_number(keyword) % 10**12:012d}",
            "status_code": 20000,
            "status_message": "Ok.",
            "time": "0.0801 sec.",
            "cost": 0.0101,
            "result_count": 1,
            "path": ["v3", "dataforseo_labs", "google", function, "live"],
            "data": {"api": "dataforseo_labs", "function": function, "se_type": "google", **task},
        }
        if not keyword or "task-error" in keyword:
            answered.update(status_code=40501, status_message="Invalid Field: 'keyword'.", result_count=0)
            answered["result"] = None
            return 200, self._envelope([answered])
        if "no-results" in keyword:
            answered["result"] = None
            return 200, self._envelope([answered])
        limit = int(task.get("limit") or 100)
        if function == "related_keywords":
            depth = int(task.get("depth") if task.get("depth") is not None else 1)
            words = [keyword] + [f"{keyword} {m}" for m in _MODIFIERS[: RELATED_PER_LEVEL * depth]]
            items = [
                {
                    "se_type": "google",
                    "keyword_data": self._keyword_data(word, task),
                    "depth": 0 if i == 0 else 1 + (i - 1) // RELATED_PER_LEVEL,
                    "related_keywords": [f"{word} {m}" for m in _MODIFIERS[:2]],
                }
                for i, word in enumerate(words)
            ][:limit]
        else:
            words = [f"{keyword} {m}" for m in _MODIFIERS[:SUGGESTIONS]]
            items = [self._keyword_data(word, task) for word in words][:limit]
        answered["result"] = [
            {
                "se_type": "google",
                "seed_keyword": keyword,
                "seed_keyword_data": self._keyword_data(keyword, task)
                if task.get("include_seed_keyword")
                else None,
                "location_code": task.get("location_code"),
                "language_code": task.get("language_code"),
                "total_count": len(items) * 10,
                "items_count": len(items),
                "offset": 0,
                "offset_token": None,
                "items": items,
            }
        ]
        return 200, self._envelope([answered])

    @staticmethod
    def _keyword_data(word: str, task: dict[str, Any]) -> dict[str, Any]:
        n = _number(word)
        data: dict[str, Any] = {
            "se_type": "google",
            "keyword": word,
            "location_code": task.get("location_code"),
            "language_code": task.get("language_code"),
            "keyword_info": {
                "se_type": "google",
                "last_updated_time": "2024-07-18 10:00:00 +00:00",
                "competition": round((n % 100) / 100, 2),
                "competition_level": "LOW" if n % 100 < 34 else "MEDIUM" if n % 100 < 67 else "HIGH",
                "cpc": round(0.25 + (n % 700) / 100, 2),
                "search_volume": 90 + (n % 50) * 110,
                "low_top_of_page_bid": 0.4,
                "high_top_of_page_bid": 3.1,
                "categories": [10004, 10168],
                "monthly_searches": [{"year": 2024, "month": 6, "search_volume": 90 + (n % 50) * 110}],
            },
            "keyword_properties": {
                "se_type": "google",
                "core_keyword": None,
                "synonym_clustering_algorithm": "text_processing",
                "keyword_difficulty": n % 90,
                "detected_language": "en",
                "is_another_language": False,
            },
            "avg_backlinks_info": None,
            "search_intent_info": {
                "se_type": "google",
                "main_intent": "informational",
                "foreign_intent": None,
            },
            "serp_info": None,
        }
        if task.get("include_serp_info"):
            data["serp_info"] = {
                "se_type": "google",
                "check_url": f"https://www.google.com/search?q={word.replace(' ', '+')}",
                "serp_item_types": ["organic", "people_also_ask"],
                "se_results_count": 1000 + n % 100000,
                "last_updated_time": "2024-07-18 10:00:00 +00:00",
            }
        if task.get("include_clickstream_data"):
            data["clickstream_keyword_info"] = {
                "search_volume": 80 + (n % 40) * 100,
                "gender_distribution": {"female": 48, "male": 52},
                "age_distribution": {"18-24": 20, "25-34": 35, "35-44": 25, "45-54": 12, "55-64": 8},
            }
        return data


# --- WordPress.com ------------------------------------------------------------------------------------
_SITE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.wordpress\.com|\d+)$")
_STATUSES = frozenset({"publish", "private", "draft", "pending", "future", "auto-draft"})


def _truthy(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "t", "yes", "on")


class WordPressServer(_SeoServer):
    def __init__(self, token: str = WORDPRESS_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.posts: dict[str, list[dict[str, Any]]] = {}

    def _reset_state(self) -> None:
        self.posts.clear()

    def _site_posts(self, site: str) -> list[dict[str, Any]]:
        if site not in self.posts:
            self.posts[site] = []
            for title in SEED_POSTS:
                self._add(site, {"title": title, "content": f"<p>{title}.</p>", "status": "publish"})
        return self.posts[site]

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) < 5 or parts[:3] != ["rest", "v1.1", "sites"] or parts[4] != "posts":
            return 404, {"error": "unknown_endpoint", "message": f"Endpoint not found: {path}"}
        site, rest = parts[3].lower(), parts[5:]
        if not _SITE.match(site):
            return 404, {"error": "unknown_blog", "message": "Unknown blog"}
        if method == "GET" and rest in ([], [""]):
            with self._lock:
                posts = [p for p in reversed(self._site_posts(site)) if p["status"] == "publish"]
            return 200, {"found": len(posts), "posts": posts, "meta": {"links": {"counts": "..."}}}
        if method != "POST" or rest != ["new"]:
            return 404, {"error": "unknown_endpoint", "message": f"Endpoint not found: {path}"}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "invalid_token", "message": "The OAuth2 token is invalid."}
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return 400, {"error": "invalid_input", "message": "Expected a form-encoded body."}
        form: dict[str, Any] = {}
        for key, value in parse_qsl(raw.decode(), keep_blank_values=True):
            if key in ("media_urls", "media_urls[]"):
                form.setdefault("media_urls", []).append(value)
            else:
                form[key] = value
        title = str(form.get("title") or "")
        if not title and not form.get("content"):
            return 400, {"error": "invalid_input", "message": "A post needs a title or content."}
        if "server-fail" in title:
            return 500, {"error": "internal", "message": f"failed for {headers.get('authorization')}"}
        status = str(form.get("status") or "publish")
        if status not in _STATUSES:
            return 400, {"error": "invalid_input", "message": f"Invalid status: {status}"}
        with self._lock:
            self._site_posts(site)
            return 200, self._add(site, form)

    def _add(self, site: str, form: dict[str, Any]) -> dict[str, Any]:
        """Store a post (the caller holds the lock) and answer it like WordPress.com."""
        posts = self.posts[site]
        post_id = 100 + len(posts) * 3
        site_id = int(site) if site.isdigit() else 200_000_000 + _number(site) % 10_000_000
        title = str(form.get("title") or "")
        slug = str(
            form.get("slug") or "-".join(re.findall(r"[a-z0-9]+", title.lower()))[:200] or str(post_id)
        )
        host = site if not site.isdigit() else f"site{site}.wordpress.com"
        attachments: dict[str, Any] = {}
        thumbnail = None
        featured = str(form.get("featured_image") or "")
        sideloaded = ([featured] if featured and not featured.isdigit() else []) + form.get("media_urls", [])
        for index, url in enumerate(sideloaded):
            attachment_id = post_id + 1000 + index
            attachments[str(attachment_id)] = {"ID": attachment_id, "URL": url, "mime_type": "image/jpeg"}
            if index == 0 and url == featured:
                thumbnail = {"ID": attachment_id, "URL": url, "mime_type": "image/jpeg", "width": 1365}
        names = [n for n in str(form.get("tags") or "").split(",") if n]
        categories = [n for n in str(form.get("categories") or "").split(",") if n] or ["Uncategorized"]
        post = {
            "ID": post_id,
            "site_ID": site_id,
            "author": {
                "ID": 7,
                "login": "agentflow",
                "email": False,
                "name": "Agentflow Test",
                "nice_name": "agentflow",
                "URL": f"https://{host}",
                "avatar_URL": "https://0.gravatar.com/avatar/0",
            },
            "date": "2024-07-19T12:00:00+00:00",
            "modified": "2024-07-19T12:00:00+00:00",
            "title": title,
            "URL": f"https://{host}/2024/07/19/{slug}/",
            "short_URL": f"https://wp.me/p{site_id % 100000}-{post_id}",
            "content": str(form.get("content") or ""),
            "excerpt": str(form.get("excerpt") or ""),
            "slug": slug,
            "guid": f"https://{host}/?p={post_id}",
            "status": str(form.get("status") or "publish"),
            "sticky": _truthy(form.get("sticky"), False),
            "password": "",
            "parent": False,
            "type": str(form.get("type") or "post"),
            "discussion": {"comments_open": True, "comment_status": "open", "pings_open": True},
            "likes_enabled": True,
            "sharing_enabled": _truthy(form.get("sharing_enabled"), True),
            "like_count": 0,
            "i_like": False,
            "is_reblogged": False,
            "is_following": True,
            "global_ID": hashlib.sha256(f"{site}/{post_id}".encode()).hexdigest()[:32],
            "featured_image": thumbnail["URL"] if thumbnail else (featured if featured.isdigit() else ""),
            "post_thumbnail": thumbnail,
            "format": "standard",
            "geo": False,
            "menu_order": 0,
            "page_template": "",
            "publicize_URLs": [],
            "terms": {"category": {}, "post_tag": {}},
            "tags": {name: {"name": name, "slug": name.lower()} for name in names},
            "categories": {name: {"name": name, "slug": name.lower()} for name in categories},
            "attachments": attachments,
            "attachment_count": len(attachments),
            "metadata": [],
            "meta": {
                "links": {
                    "self": f"https://public-api.wordpress.com/rest/v1.1/sites/{site_id}/posts/{post_id}"
                }
            },
            "capabilities": {"publish_post": True, "delete_post": True, "edit_post": True},
            "other_URLs": {},
        }
        posts.append(post)
        return post


# --- the Automated SEO Blog Writer export (agent_55d40473-...) ----------------------------------------
SEO_WRITER_EXPORT = "agent_55d40473-0f31-4ada-9e40-d3a7139fcbd4.json"
SEO_WRITER_BLOG = "aiespresso.wordpress.com"
SEO_WRITER_KEYWORD = "ai tools for beginners"
# The export reads the blog's earlier titles with a SendWebRequest to this hard-coded public API.
WORDPRESS_PUBLIC_API = "https://public-api.wordpress.com"


def seo_writer_rules() -> list[tuple[str, list[dict[str, Any]]]]:
    """ScriptedLLMServer rules for the export's "Keyword SEO Expert" SmartDecisionMaker: one call to
    each research tool (sub-agents around the DataForSEO blocks), then the seven XML blocks its
    XMLParser reads. The export's other LLM nodes get the server's default answers."""
    limits = {"minimum_volume": 0, "max_keyword_difficulty": 100}
    related = {"name": "get_related_search_keywords", "arguments": {"keyword": "ai tools", **limits}}
    autocomplete = {
        "name": "get_autocomplete_keyword_suggestions",
        "arguments": {"keyword": "ai for beginners", **limits},
    }
    finish = (
        "<research_log>Seeds: ai tools (related), ai for beginners (autocomplete).</research_log>\n"
        "<selection_notes>Kept beginner-focused keywords with low difficulty.</selection_notes>\n"
        f"<primary_keyword>{SEO_WRITER_KEYWORD}</primary_keyword>\n"
        "<proposed_title>The Best AI Tools for Beginners in 2024</proposed_title>\n"
        "<kd>12</kd>\n<sv>1200</sv>\n"
        "<justification>High volume, low difficulty, not covered by earlier posts.</justification>"
    )
    return [
        (
            "You are a seasoned SEO strategist",
            [{"tool_calls": [related]}, {"tool_calls": [autocomplete]}, {"content": finish}],
        )
    ]


KEYWORD_FILTER_MARK = "def filter_keywords(items, min_volume: int, max_difficulty: int):"
HUMANIZER_MARK = "print(RE.sub(lambda m: MAP[m.group(0)], input_string))"
_RAW = re.compile(r'raw = """(.*?)"""', re.S)
_LIMITS = re.compile(r"min_volume=([-\d.]+), max_difficulty=([-\d.]+)\)")
_INPUT_STRING = re.compile(r'input_string = """(.*?)"""\n', re.S)
# The script's MAP (typographic characters and their plain spellings).
_TYPOGRAPHY = {
    "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2014": " - ", "\u2013": "-",
    "\u2026": "...", "\u2032": "'", "\u2033": '"', "\u2212": "-", "\u00d7": "x", "\u00f7": "/",
    "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u00b1": "+/-", "\u2248": "~", "\u2192": "->",
    "\u2190": "<-", "\u2194": "<->", "\u21d2": "=>", "\u21d0": "<=", "\u2022": "*", "\u00b7": ".",
    "\u00a9": "(C)", "\u00ae": "(R)", "\u2122": "(TM)", "\u00bd": "1/2", "\u00bc": "1/4", "\u00be": "3/4",
    "\u2153": "1/3", "\u2154": "2/3", "\u215b": "1/8", "\u215c": "3/8", "\u215d": "5/8", "\u215e": "7/8",
    "\u00ab": "<<", "\u00bb": ">>", "\u2039": "<", "\u203a": ">", "\u00a0": " ", "\u2010": "-",
    "\u2011": "-", "\u2012": "-", "\u00ad": "",
}  # fmt: skip


def _python_error(name: str, value: str) -> dict[str, Any]:
    return {"error": {"name": name, "value": value, "traceback": f"{name}: {value}"}}


def keyword_filter_program(code: str, env_vars: dict[str, str]) -> dict[str, Any]:
    """What the export's keyword filter script prints (its Markdown table of the keywords within the
    volume and difficulty limits, by volume), computed here: nothing is executed."""
    raw, limits = _RAW.search(code), _LIMITS.search(code)
    if raw is None or limits is None:
        return _python_error("SyntaxError", "invalid syntax")
    text = raw.group(1).strip()
    if not text.startswith("["):
        text = "[" + text.rstrip(", \n") + "]"
    try:
        items = json.loads(text)
    except ValueError as exc:
        return _python_error("JSONDecodeError", str(exc))
    low, high = float(limits.group(1)), float(limits.group(2))
    rows = [
        r
        for r in items
        if isinstance(r.get("search_volume"), int | float)
        and isinstance(r.get("keyword_difficulty"), int | float)
        and r["search_volume"] >= low
        and r["keyword_difficulty"] <= high
    ]
    rows.sort(key=lambda r: (-r["search_volume"], r["keyword_difficulty"]))
    columns = [
        "keyword",
        "search_volume",
        "keyword_difficulty",
        "cpc",
        "competition",
        "serp_info",
        "clickstream_data",
    ]

    def cell(value: Any) -> str:
        if value is None:
            return ""
        text = f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
        return text.replace("|", r"\|").replace("\n", " ").replace("\r", " ")

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return {"stdout": ["\n".join(lines) + "\n"]}


def humanizer_program(code: str, env_vars: dict[str, str]) -> dict[str, Any]:
    """What the export's "Text Humanizer" script prints: its text with typographic characters made plain."""
    found = _INPUT_STRING.search(code)
    if found is None:
        return _python_error("SyntaxError", "unterminated triple-quoted string literal")
    return {"stdout": ["".join(_TYPOGRAPHY.get(ch, ch) for ch in found.group(1)) + "\n"]}


def script_seo_writer_programs(server: Any) -> None:
    """Add the export's two sandbox programs to an E2BStyleServer's script (without resetting it)."""
    server.rule(KEYWORD_FILTER_MARK, keyword_filter_program)
    server.rule(HUMANIZER_MARK, humanizer_program)


def with_local_wordpress(graph: Graph, base_url: str) -> Graph:
    """`graph` with the hard-coded WordPress.com API URL in its nodes' inputs replaced by `base_url`:
    the export lists the blog's posts with a plain SendWebRequest, which no environment variable can
    point elsewhere, and tests must not reach the real service."""

    def swap(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(WORDPRESS_PUBLIC_API, base_url.rstrip("/"))
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return dataclasses.replace(
        graph,
        nodes=tuple(dataclasses.replace(n, input_default=swap(dict(n.input_default))) for n in graph.nodes),
        sub_graphs=tuple(with_local_wordpress(s, base_url) for s in graph.sub_graphs),
    )
