"""Shared fixtures: fresh Postgres schemas, and the local LLM and Jina-style servers
(tests/support_servers.py) and Google Maps-style server (tests/support_google_maps.py)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from support_airtable import AirtableServer
from support_discord import FakeDiscord
from support_e2b import E2BStyleServer
from support_firecrawl import FirecrawlServer
from support_google import GmailStyleServer
from support_google_maps import GoogleMapsStyleServer
from support_media import IdeogramServer, MediumServer, ReplicateServer
from support_revid import RevidStyleServer
from support_seo import DataForSeoServer, WordPressServer
from support_servers import JinaStyleServer, ScriptedLLMServer
from support_youtube import YouTubeStyleServer

# No test reaches the real YouTube (exports with TranscribeYoutubeVideo run without a test's server in
# test_autogpt_exports.py and test_differential.py): this literal loopback address is refused as
# private, or unreachable where private addresses are allowed, and nothing is looked up in DNS.
os.environ.setdefault("AGENTFLOW_YOUTUBE_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("AGENTFLOW_WEBSHARE_PROXY_URL", "http://127.0.0.1:9")
# Likewise E2B (ExecuteCodeBlock), should an AGENTFLOW_E2B_API_KEY be set where the tests run.
os.environ.setdefault("AGENTFLOW_E2B_API_URL", "http://127.0.0.1:9")
# Likewise Gmail (GmailSendBlock) and revid.ai (AIShortformVideoCreatorBlock).
os.environ.setdefault("AGENTFLOW_GOOGLE_API_URL", "http://127.0.0.1:9")
os.environ.setdefault("AGENTFLOW_REVID_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("AGENTFLOW_E2B_SANDBOX_URL", "http://127.0.0.1:9")
# Likewise DataForSEO and WordPress.com (the SEO blog writer export).
os.environ.setdefault("AGENTFLOW_DATAFORSEO_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("AGENTFLOW_WORDPRESS_BASE_URL", "http://127.0.0.1:9")
# Likewise Firecrawl and Airtable (the Automated Support Agent export).
os.environ.setdefault("AGENTFLOW_FIRECRAWL_API_URL", "http://127.0.0.1:9")
os.environ.setdefault("AGENTFLOW_AIRTABLE_BASE_URL", "http://127.0.0.1:9")

BASE_DSN = os.environ.get("AGENTFLOW_TEST_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@contextmanager
def _fresh_schema() -> Iterator[str]:
    """A DSN whose search_path is a new, empty schema, dropped afterwards."""
    import psycopg2

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(BASE_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{BASE_DSN} options='-csearch_path={schema}'"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture(scope="session")
def fresh_pg_schema() -> Callable[[], AbstractContextManager[str]]:
    return _fresh_schema


@pytest.fixture(scope="module")
def pg_dsn(fresh_pg_schema: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    with fresh_pg_schema() as dsn:
        yield dsn


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A Redis client on the test Redis, decoding replies as most callers configure it."""
    r = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    yield r
    r.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"t{uuid.uuid4().hex}"
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)


class _Startable(Protocol):
    def start(self) -> object: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Startable)


def _serving(server: S) -> Iterator[S]:
    """A session's stand-in server: started once, stopped after the last test."""
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llm_server() -> Iterator[ScriptedLLMServer]:
    yield from _serving(ScriptedLLMServer())


@pytest.fixture(scope="session")
def jina_server() -> Iterator[JinaStyleServer]:
    yield from _serving(JinaStyleServer())


@pytest.fixture(scope="session")
def google_maps_server() -> Iterator[GoogleMapsStyleServer]:
    yield from _serving(GoogleMapsStyleServer())


@pytest.fixture(scope="session")
def ideogram_server() -> Iterator[IdeogramServer]:
    yield from _serving(IdeogramServer())


@pytest.fixture(scope="session")
def replicate_server() -> Iterator[ReplicateServer]:
    yield from _serving(ReplicateServer())


@pytest.fixture(scope="session")
def medium_server() -> Iterator[MediumServer]:
    yield from _serving(MediumServer())


@pytest.fixture(scope="session")
def youtube_server() -> Iterator[YouTubeStyleServer]:
    yield from _serving(YouTubeStyleServer())


@pytest.fixture(scope="session")
def discord_server() -> Iterator[FakeDiscord]:
    yield from _serving(FakeDiscord())


@pytest.fixture(scope="session")
def e2b_server() -> Iterator[E2BStyleServer]:
    yield from _serving(E2BStyleServer())


@pytest.fixture(scope="session")
def gmail_server() -> Iterator[GmailStyleServer]:
    yield from _serving(GmailStyleServer())


@pytest.fixture(scope="session")
def revid_server() -> Iterator[RevidStyleServer]:
    yield from _serving(RevidStyleServer())


@pytest.fixture(scope="session")
def dataforseo_server() -> Iterator[DataForSeoServer]:
    yield from _serving(DataForSeoServer())


@pytest.fixture(scope="session")
def wordpress_server() -> Iterator[WordPressServer]:
    yield from _serving(WordPressServer())


@pytest.fixture(scope="session")
def firecrawl_server() -> Iterator[FirecrawlServer]:
    yield from _serving(FirecrawlServer())


@pytest.fixture(scope="session")
def airtable_server() -> Iterator[AirtableServer]:
    yield from _serving(AirtableServer())
