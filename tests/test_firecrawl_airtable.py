"""Firecrawl (crawl, extract, map) and Airtable (create base, create records) blocks against the local
servers in tests/support_firecrawl.py and tests/support_airtable.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from support_airtable import AIRTABLE_TOKEN, CREATED_TIME, WORKSPACE_ID, AirtableServer
from support_blocks import credential, run_block, secret_free
from support_firecrawl import FIRECRAWL_KEY, FirecrawlServer

from blocks import REGISTRY, Credentials
from blocks.library.airtable import AirtableCreateBaseBlock, AirtableCreateRecordsBlock
from blocks.library.firecrawl import FirecrawlCrawlBlock, FirecrawlExtractBlock, FirecrawlMapWebsiteBlock

KEYS = (FIRECRAWL_KEY, AIRTABLE_TOKEN)

# The table of the Automated Support Agent export's AirtableCreateBaseBlock node (abridged).
SUPPORT_TABLES = [
    {
        "name": "Default table",
        "description": "Default table",
        "fields": [
            {"name": "Email ID", "type": "singleLineText"},
            {
                "name": "Email Received",
                "type": "dateTime",
                "options": {
                    "timeZone": "utc",
                    "dateFormat": {"name": "iso"},
                    "timeFormat": {"name": "24hour"},
                },
            },
            {"name": "Sender", "type": "email"},
            {"name": "Confidence Score", "type": "number", "options": {"precision": 0}},
            {"name": "Replied", "type": "checkbox", "options": {"icon": "check", "color": "greenBright"}},
            {"name": "Reasoning", "type": "multilineText"},
        ],
    }
]


def no_key(value: Any) -> bool:
    return secret_free(value, *KEYS)


@pytest.fixture
def firecrawl(
    firecrawl_server: FirecrawlServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FirecrawlServer]:
    firecrawl_server.reset()
    firecrawl_server.polls_to_finish = 1
    monkeypatch.setenv("AGENTFLOW_FIRECRAWL_API_URL", firecrawl_server.url)
    monkeypatch.setenv("AGENTFLOW_FIRECRAWL_POLL_INTERVAL", "0.01")
    yield firecrawl_server


@pytest.fixture
def airtable(airtable_server: AirtableServer, monkeypatch: pytest.MonkeyPatch) -> AirtableServer:
    airtable_server.reset()
    monkeypatch.setenv("AGENTFLOW_AIRTABLE_BASE_URL", airtable_server.url)
    return airtable_server


FC = credential("firecrawl", FIRECRAWL_KEY)
AT = credential("airtable", AIRTABLE_TOKEN)


# --- registry -------------------------------------------------------------------------------------------
def test_blocks_are_registered_under_autogpt_ids_with_autogpt_pins() -> None:
    expected = {
        "bdbbaba0-03b7-4971-970e-699e2de6015e": (
            "FirecrawlCrawlBlock",
            {"credentials", "url", "limit", "only_main_content", "max_age", "wait_for", "formats"},
            {
                "error",
                "data",
                "markdown",
                "html",
                "raw_html",
                "links",
                "screenshot",
                "screenshot_full_page",
                "json_data",
                "change_tracking",
            },
        ),
        "d1774756-4d9e-40e6-bab1-47ec0ccd81b2": (
            "FirecrawlExtractBlock",
            {"credentials", "urls", "prompt", "output_schema", "enable_web_search"},
            {"error", "data"},
        ),
        "f0f43e2b-c943-48a0-a7f1-40136ca4d3b9": (
            "FirecrawlMapWebsiteBlock",
            {"credentials", "url"},
            {"error", "links", "results"},
        ),
        "f59b88a8-54ce-4676-a508-fd614b4e8dce": (
            "AirtableCreateBaseBlock",
            {"credentials", "workspace_id", "name", "find_existing", "tables"},
            {"error", "base_id", "tables", "table", "was_created"},
        ),
        "42527e98-47b6-44ce-ac0e-86b4883721d3": (
            "AirtableCreateRecordsBlock",
            {
                "credentials",
                "base_id",
                "table_id_or_name",
                "records",
                "skip_normalization",
                "typecast",
                "return_fields_by_field_id",
            },
            {"error", "records", "details"},
        ),
    }
    for block_id, (name, inputs, outputs) in expected.items():
        block = REGISTRY.get(block_id)
        assert block is not None and block.name == name
        assert set(block.input_pins({})) == inputs
        assert set(block.output_pins({})) == outputs
        [field] = block.credentials
        assert (field.input_name, field.type) == ("credentials", "api_key")
        assert field.provider == ("firecrawl" if name.startswith("Firecrawl") else "airtable")


# --- Firecrawl ------------------------------------------------------------------------------------------
def test_crawl_starts_a_job_polls_it_and_follows_the_next_pages(firecrawl: FirecrawlServer) -> None:
    outputs = run_block(
        FirecrawlCrawlBlock(),
        {"url": "https://docs.example.com", "formats": ["markdown", "html", "links"], "limit": 10},
        FC,
    )
    pins = [pin for pin, _ in outputs]
    assert pins == ["data"] + ["markdown", "html", "links"] * 3
    data = outputs[0][1]
    assert [page["metadata"]["source_url"] for page in data] == [
        "https://docs.example.com/",
        "https://docs.example.com/page-1",
        "https://docs.example.com/page-2",
    ]
    assert outputs[1] == ("markdown", "# Page 0\n\nContent of https://docs.example.com/")
    assert outputs[3] == ("links", ["https://docs.example.com/#a", "https://docs.example.com/#b"])
    start = firecrawl.requests[0]
    assert (start["method"], start["path"]) == ("POST", "/v2/crawl")
    assert start["headers"]["authorization"] == f"Bearer {FIRECRAWL_KEY}"
    assert start["body"]["url"] == "https://docs.example.com" and start["body"]["limit"] == 10
    options = start["body"]["scrapeOptions"]
    assert {k: options[k] for k in ("formats", "onlyMainContent", "maxAge", "waitFor")} == {
        "formats": ["markdown", "html", "links"],
        "onlyMainContent": True,
        "maxAge": 3600000,
        "waitFor": 0,
    }
    polls = [r for r in firecrawl.requests if r["method"] == "GET"]
    # one "scraping" answer, the completed first page, then the page its `next` named
    assert [r["query"].get("skip") for r in polls] == [None, None, "2"]
    assert no_key(outputs)


def test_crawl_full_page_screenshot_and_change_tracking_formats(firecrawl: FirecrawlServer) -> None:
    outputs = run_block(
        FirecrawlCrawlBlock(),
        {"url": "https://x.example", "formats": ["screenshot@fullPage", "changeTracking"], "limit": 1},
        FC,
    )
    assert [pin for pin, _ in outputs] == ["data", "screenshot_full_page", "change_tracking"]
    assert outputs[2] == ("change_tracking", {"changeStatus": "new", "visibility": "visible"})
    assert firecrawl.requests[0]["body"]["scrapeOptions"]["formats"] == [
        {"type": "screenshot", "fullPage": True},
        "changeTracking",
    ]


def test_crawl_plain_json_format_is_refused_by_the_client_as_in_autogpt(firecrawl: FirecrawlServer) -> None:
    # firecrawl-py 4 wants a prompt or schema with "json"; AutoGPT's block sends the bare name too.
    [(pin, message)] = run_block(FirecrawlCrawlBlock(), {"url": "https://x.example", "formats": ["json"]}, FC)
    assert pin == "error" and "json format must be an object" in message
    assert firecrawl.requests == []


def test_crawl_rejects_an_unknown_format_before_any_request(firecrawl: FirecrawlServer) -> None:
    with pytest.raises(ValueError, match="formats"):
        FirecrawlCrawlBlock().make_input({"url": "https://x.example", "formats": ["pdf"]})
    assert firecrawl.requests == []


def test_crawl_job_that_fails_is_an_error(firecrawl: FirecrawlServer) -> None:
    outputs = run_block(FirecrawlCrawlBlock(), {"url": "https://fail-crawl.example"}, FC)
    [(pin, message)] = outputs
    assert pin == "error" and "ended with status 'failed'" in message


def test_crawl_server_error_and_refused_key_without_the_key(firecrawl: FirecrawlServer) -> None:
    [(pin, message)] = run_block(FirecrawlCrawlBlock(), {"url": "https://server-fail.example"}, FC)
    assert pin == "error" and message.startswith("Internal Server Error: Failed to start crawl.")
    assert FIRECRAWL_KEY not in message and "***" in message
    [(pin, message)] = run_block(
        FirecrawlCrawlBlock(), {"url": "https://x.example"}, credential("firecrawl", "fc-wrong")
    )
    assert pin == "error" and message.startswith("Unauthorized: Failed to start crawl.")
    assert "Invalid token" in message


def test_extract_starts_a_job_and_polls_until_completed(firecrawl: FirecrawlServer) -> None:
    firecrawl.polls_to_finish = 2
    outputs = run_block(
        FirecrawlExtractBlock(),
        {"urls": ["https://docs.example.com/*"], "prompt": "What does the product cost?"},
        FC,
    )
    assert outputs == [
        (
            "data",
            {
                "answer": "Answer to 'What does the product cost?' from 1 URL(s)",
                "sources": ["https://docs.example.com/*"],
            },
        )
    ]
    start = firecrawl.requests[0]
    assert (start["method"], start["path"]) == ("POST", "/v2/extract")
    assert {k: start["body"][k] for k in ("urls", "prompt", "enableWebSearch")} == {
        "urls": ["https://docs.example.com/*"],
        "prompt": "What does the product cost?",
        "enableWebSearch": False,
    }
    assert "schema" not in start["body"]
    assert [r["method"] for r in firecrawl.requests] == ["POST", "GET", "GET", "GET"]


def test_extract_passes_the_output_schema(firecrawl: FirecrawlServer) -> None:
    schema = {"type": "object", "properties": {"price": {"type": "string"}}}
    outputs = run_block(
        FirecrawlExtractBlock(),
        {"urls": ["https://a.example"], "output_schema": schema, "enable_web_search": True},
        FC,
    )
    assert outputs == [("data", {"price": "price: https://a.example"})]
    assert firecrawl.requests[0]["body"]["schema"] == schema
    assert firecrawl.requests[0]["body"]["enableWebSearch"] is True


def test_extract_errors_carry_autogpt_prefixes_without_the_key(firecrawl: FirecrawlServer) -> None:
    [(pin, message)] = run_block(
        FirecrawlExtractBlock(), {"urls": ["https://a.example"], "prompt": "fail-extract"}, FC
    )
    assert (
        pin == "error"
        and message.startswith("Extract failed:")
        and "Extraction failed for all URLs" in message
    )
    [(pin, message)] = run_block(
        FirecrawlExtractBlock(), {"urls": ["https://a.example"], "prompt": "server-fail"}, FC
    )
    assert pin == "error" and message.startswith("Server error: HTTP 500")
    assert FIRECRAWL_KEY not in message
    [(pin, message)] = run_block(
        FirecrawlExtractBlock(), {"urls": ["https://a.example"]}, credential("firecrawl", "fc-wrong")
    )
    assert (pin, message) == ("error", "Extract failed: HTTP 401: Unauthorized: Invalid token")


def test_map_yields_links_and_results(firecrawl: FirecrawlServer) -> None:
    outputs = run_block(FirecrawlMapWebsiteBlock(), {"url": "https://docs.example.com"}, FC)
    assert outputs == [
        (
            "links",
            [
                "https://docs.example.com/",
                "https://docs.example.com/docs",
                "https://docs.example.com/pricing",
            ],
        ),
        (
            "results",
            [
                {
                    "url": "https://docs.example.com/",
                    "title": "Home",
                    "description": "The home page of https://docs.example.com",
                },
                {"url": "https://docs.example.com/docs", "title": "Docs", "description": None},
                {"url": "https://docs.example.com/pricing", "title": "Pricing", "description": None},
            ],
        ),
    ]
    assert firecrawl.requests[0]["body"]["url"] == "https://docs.example.com"
    [(pin, message)] = run_block(
        FirecrawlMapWebsiteBlock(), {"url": "https://a.example"}, credential("firecrawl", "fc-wrong")
    )
    assert pin == "error" and message.startswith("Unauthorized: Failed to map.")


def test_firecrawl_refuses_a_loopback_api_url_unless_allowed(firecrawl: FirecrawlServer) -> None:
    for block, data in (
        (FirecrawlCrawlBlock(), {"url": "https://a.example"}),
        (FirecrawlExtractBlock(), {"urls": ["https://a.example"]}),
        (FirecrawlMapWebsiteBlock(), {"url": "https://a.example"}),
    ):
        [(pin, message)] = run_block(block, data, FC, allow_private=False)
        assert pin == "error" and "127.0.0.1" in message and "allow_private_addresses" in message
    assert firecrawl.requests == []


def test_firecrawl_api_url_from_a_json_credential(
    firecrawl: FirecrawlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_FIRECRAWL_API_URL", "http://127.0.0.1:9")
    secret = json.dumps({"api_key": FIRECRAWL_KEY, "base_url": firecrawl.url})
    outputs = run_block(
        FirecrawlMapWebsiteBlock(), {"url": "https://a.example"}, credential("firecrawl", secret)
    )
    assert outputs[0][0] == "links" and len(firecrawl.requests) == 1
    assert no_key(outputs)


def test_firecrawl_without_a_credential_says_so(firecrawl: FirecrawlServer) -> None:
    [(pin, message)] = run_block(FirecrawlMapWebsiteBlock(), {"url": "https://a.example"}, {})
    assert pin == "error" and "firecrawl credential" in message
    assert firecrawl.requests == []


# --- Airtable -------------------------------------------------------------------------------------------
def test_create_base_creates_then_finds_the_existing_base(airtable: AirtableServer) -> None:
    data = {"workspace_id": WORKSPACE_ID, "name": "Support log", "tables": SUPPORT_TABLES}
    created = run_block(AirtableCreateBaseBlock(), data, AT)
    assert [pin for pin, _ in created] == ["base_id", "was_created", "tables", "table"]
    base_id = created[0][1]
    assert base_id.startswith("app") and created[1] == ("was_created", True)
    table = created[3][1]
    assert table["name"] == "Default table" and [f["name"] for f in table["fields"]][:2] == [
        "Email ID",
        "Email Received",
    ]
    listing, post = airtable.requests
    assert (listing["method"], listing["path"]) == ("GET", "/v0/meta/bases")
    assert (post["method"], post["path"]) == ("POST", "/v0/meta/bases")
    assert post["headers"]["authorization"] == f"Bearer {AIRTABLE_TOKEN}"
    assert post["body"] == {"name": "Support log", "workspaceId": WORKSPACE_ID, "tables": SUPPORT_TABLES}

    found = run_block(AirtableCreateBaseBlock(), data, AT)
    assert found == [("base_id", base_id), ("was_created", False), ("tables", [table]), ("table", table)]
    assert [(r["method"], r["path"]) for r in airtable.requests[2:]] == [
        ("GET", "/v0/meta/bases"),
        ("GET", f"/v0/meta/bases/{base_id}/tables"),
    ]
    # find_existing off: a second base of the same name
    again = run_block(AirtableCreateBaseBlock(), {**data, "find_existing": False}, AT)
    assert again[1] == ("was_created", True) and again[0][1] != base_id
    assert len(airtable.bases) == 2


def test_create_base_default_table_and_refused_workspace(airtable: AirtableServer) -> None:
    outputs = run_block(AirtableCreateBaseBlock(), {"workspace_id": WORKSPACE_ID, "name": "Plain"}, AT)
    assert [f["name"] for f in outputs[3][1]["fields"]] == ["ID"]
    [(pin, message)] = run_block(AirtableCreateBaseBlock(), {"workspace_id": "nope", "name": "Other"}, AT)
    assert (pin, message) == (
        "error",
        "Airtable refused the request: HTTP 422: Invalid permissions, or the requested model was not found.",
    )


def test_create_records_normalizes_the_answer_to_the_table_schema(airtable: AirtableServer) -> None:
    created = run_block(
        AirtableCreateBaseBlock(), {"workspace_id": WORKSPACE_ID, "name": "Log", "tables": SUPPORT_TABLES}, AT
    )
    base_id, table = created[0][1], created[3][1]
    records = [
        {"Email ID": "m-1", "Sender": "ada@example.com", "Confidence Score": 87, "Replied": "TRUE"},
        {"Email ID": "m-2", "Reasoning": "", "Replied": "false"},
    ]
    outputs = run_block(
        AirtableCreateRecordsBlock(),
        {"base_id": base_id, "table_id_or_name": table["id"], "records": records, "typecast": True},
        AT,
    )
    [(pin, result)] = outputs
    assert pin == "records"
    assert [r["fields"] for r in result] == [
        {
            "Email ID": "m-1",
            "Email Received": None,
            "Sender": "ada@example.com",
            "Confidence Score": 87,
            "Replied": True,
            "Reasoning": "",
        },
        {
            "Email ID": "m-2",
            "Email Received": None,
            "Sender": "",
            "Confidence Score": 0,
            "Replied": False,
            "Reasoning": "",
        },
    ]
    assert all(r["id"].startswith("rec") and r["createdTime"] == CREATED_TIME for r in result)
    post = next(r for r in airtable.requests if r["path"] == f"/v0/{base_id}/{table['id']}")
    # "TRUE"/"false" strings are sent as booleans, as AutoGPT's _convert_bools does
    assert post["body"] == {
        "records": [
            {"fields": {**records[0], "Replied": True}},
            {"fields": {**records[1], "Replied": False}},
        ],
        "typecast": True,
    }
    assert airtable.requests[-1]["path"] == f"/v0/meta/bases/{base_id}/tables"


def test_create_records_by_table_name_raw(airtable: AirtableServer) -> None:
    created = run_block(
        AirtableCreateBaseBlock(), {"workspace_id": WORKSPACE_ID, "name": "Log", "tables": SUPPORT_TABLES}, AT
    )
    base_id = created[0][1]
    outputs = run_block(
        AirtableCreateRecordsBlock(),
        {
            "base_id": base_id,
            "table_id_or_name": "Default table",
            "records": [{"Email ID": "m-3", "Replied": False}],
            "skip_normalization": True,
        },
        AT,
    )
    [(pin, result)] = outputs
    assert pin == "records" and [r["fields"] for r in result] == [{"Email ID": "m-3"}]
    assert airtable.requests[-1]["path"] == f"/v0/{base_id}/Default table"


def test_create_records_errors(airtable: AirtableServer) -> None:
    created = run_block(
        AirtableCreateBaseBlock(), {"workspace_id": WORKSPACE_ID, "name": "Log", "tables": SUPPORT_TABLES}, AT
    )
    base_id = created[0][1]
    before = len(airtable.requests)
    block = AirtableCreateRecordsBlock()
    target = {"base_id": base_id, "table_id_or_name": "Default table"}
    assert run_block(block, {**target, "records": []}, AT) == [
        ("error", "At least one of fields or records must be provided")
    ]
    assert run_block(block, {**target, "records": [{"Email ID": str(i)} for i in range(11)]}, AT) == [
        ("error", "Only up to 10 records can be provided when using records")
    ]
    assert len(airtable.requests) == before
    [(pin, message)] = run_block(block, {**target, "records": [{"Nope": 1}]}, AT)
    assert (pin, message) == ("error", 'Airtable refused the request: HTTP 422: Unknown field name: "Nope"')
    [(pin, message)] = run_block(
        block, {**target, "table_id_or_name": "Missing", "records": [{"Email ID": "x"}]}, AT
    )
    assert pin == "error" and "HTTP 404" in message and "Could not find table Missing" in message
    [(pin, message)] = run_block(block, {**target, "records": [{"Email ID": "server-fail"}]}, AT)
    assert pin == "error" and message.startswith("Airtable server error: HTTP 500")
    assert AIRTABLE_TOKEN not in message and "***" in message


def test_airtable_refused_token_without_the_token(airtable: AirtableServer) -> None:
    wrong = credential("airtable", "patWRONG.token")
    expected = [("error", "Airtable refused the request: HTTP 401: Authentication required")]
    assert (
        run_block(AirtableCreateBaseBlock(), {"workspace_id": WORKSPACE_ID, "name": "X"}, wrong) == expected
    )
    records = {"base_id": "appX", "table_id_or_name": "T", "records": [{"a": 1}]}
    assert run_block(AirtableCreateRecordsBlock(), records, wrong) == expected


def test_airtable_oauth_access_token_in_a_json_credential(airtable: AirtableServer) -> None:
    secret = json.dumps({"access_token": AIRTABLE_TOKEN})
    oauth = {"credentials": Credentials("at-oauth", "airtable", "oauth2", SecretStr(secret), "local")}
    outputs = run_block(AirtableCreateBaseBlock(), {"workspace_id": WORKSPACE_ID, "name": "X"}, oauth)
    assert outputs[1] == ("was_created", True)
    assert no_key(outputs)


def test_airtable_refuses_a_loopback_base_url_unless_allowed(airtable: AirtableServer) -> None:
    [(pin, message)] = run_block(
        AirtableCreateBaseBlock(), {"workspace_id": WORKSPACE_ID, "name": "X"}, AT, allow_private=False
    )
    assert pin == "error" and "127.0.0.1" in message and "allow_private_addresses" in message
    [(pin, message)] = run_block(
        AirtableCreateRecordsBlock(),
        {"base_id": "appX", "table_id_or_name": "T", "records": [{"a": 1}]},
        AT,
        allow_private=False,
    )
    assert pin == "error" and "allow_private_addresses" in message
    assert airtable.requests == []
