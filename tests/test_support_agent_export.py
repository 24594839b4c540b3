"""The Automated Support Agent export (agent_b8ceb480-...) through its ticket path, on the reference
engine and as a compiled Dagster job: an unread customer question (tests/support_google.py
`support_ticket()`) is read from Gmail and labelled processed, researched by the 'Product Knowledge
Agent' sub-agent (a SmartDecisionMaker calling the FireCrawl Extract tool against tests/support_firecrawl.py),
analysed, then auto-replied in its thread or forwarded to the escalation address, and logged as a record
in a new Airtable base (tests/support_airtable.py) whose ids the run persists."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from support_airtable import WORKSPACE_ID, AirtableServer
from support_firecrawl import FirecrawlServer
from support_google import (
    SUPPORT_AGENT_EXPORT,
    SUPPORT_CUSTOMER,
    SUPPORT_DOCS_PAGE,
    SUPPORT_DOCS_URL,
    SUPPORT_ESCALATION_EMAIL,
    SUPPORT_REPLY,
    SUPPORT_SUBJECT,
    SUPPORT_TICKET_ID,
    GmailStyleServer,
    support_agent_rules,
    support_ticket,
)
from support_servers import ScriptedLLMServer
from test_llm_blocks import (  # noqa: F401  (servers and instant_timers are fixtures)
    EXPORTS_DIR,
    EngineWithCredentials,
    Resolver,
    _inputs,
    assert_no_key,
    instant_timers,
    servers,
    with_credential_references,
)

from agent_defs.engine import RunOptions, RunStatus
from agent_defs.graph import load_graph_file
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.store.kv_data import TABLE, SqliteKeyValueStore

EXPORT = EXPORTS_DIR / SUPPORT_AGENT_EXPORT
QUERY = "is:unread -label:agent-processed in:inbox newer_than:1d"
SIGNATURE = "Best regards,\nAcme Support"
EXTRACT_PROMPT = "How to rotate an API key without downtime"
# The export's nodes (main graph) a ticket run goes through, or must not reach.
GMAIL_READ = "c5a1791f-92c0-4dbd-8c6c-732db2be6225"
ADD_LABEL = "6516c017-1d49-466f-bdb4-002802ae13f9"
KNOWLEDGE_AGENT = "21fa5920-eff4-4641-a598-0f90f73dce61"
ANALYSIS = "6b2e19b1-5bb8-49bc-939c-8220d17e9dee"
CREATE_BASE = "e061a66b-3e5f-475f-bfa3-ba364f662f7c"
CREATE_RECORDS = "8af604e1-68d7-416f-84fe-41b1ffc3749e"
ESCALATION_WRITER = "f064e18f-2363-488b-ab47-dab1d85e55b7"
REPLY = "e69c4fcb-ce36-411a-a205-7a07bdd08413"
FORWARD = "2bea668b-a6b5-467e-9bc6-787be7f21cf7"
NO_TICKETS_OUTPUT = "1d9be004-1d01-446d-b692-09bd20c74d08"


def run_export(
    engine_kind: str, inputs: dict[str, Any], tmp_path: Path
) -> tuple[dict[str, Any], int, dict[str, int], dict[str, Any]]:
    """(outputs, failed node executions, executions by node id, the durable store's values by key) of one
    run on a fresh store; the run itself must complete."""
    graph = with_credential_references(load_graph_file(EXPORT))
    kv_path = tmp_path / f"{engine_kind}_kv.sqlite"
    engine = EngineWithCredentials(credentials=Resolver(), kv_store=SqliteKeyValueStore(kv_path))
    if engine_kind == "reference":
        result = engine.run_sync(graph, inputs, RunOptions(settings={"allow_private_addresses": True}))
        assert result.status is RunStatus.COMPLETED, result.error
        assert_no_key(result.to_json())
        outputs, errors, counts = result.outputs, result.node_error_count, result.execution_counts()
    else:
        job = compile_graph(graph, engine=engine, console_log_level="ERROR")
        with DagsterInstance.ephemeral() as instance:
            run = job.execute_in_process(
                run_config={"inputs": inputs}, instance=instance, raise_on_error=False
            )
            summary = read_run_summary(instance, run.run_id)
        assert summary["status"] == "COMPLETED", summary
        assert_no_key(summary)
        outputs, errors, counts = (
            summary["outputs"],
            summary["node_error_count"],
            summary["node_execution_counts"],
        )
    with sqlite3.connect(kv_path) as conn:
        stored = {key: json.loads(data) for key, data in conn.execute(f"SELECT key, data FROM {TABLE}")}
    return outputs, errors, counts, stored


@pytest.mark.parametrize("auto_reply", [True, False], ids=["auto-reply", "escalation"])
@pytest.mark.parametrize("engine_kind", ["reference", "dagster"])
def test_support_ticket_is_researched_answered_and_logged(
    engine_kind: str,
    auto_reply: bool,
    servers: tuple[ScriptedLLMServer, Any],  # noqa: F811 - the fixture imported above
    gmail_server: GmailStyleServer,
    firecrawl_server: FirecrawlServer,
    airtable_server: AirtableServer,
    instant_timers: list[float],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    llm, _ = servers
    gmail_server.add_message(*support_ticket())  # the servers fixture restores the mailbox afterwards
    llm.reset()
    for match, replies in support_agent_rules(auto_reply):
        llm.script(match, *replies)
    inputs = _inputs(load_graph_file(EXPORT), EXPORT)
    assert inputs["Documentation URL"] == SUPPORT_DOCS_URL and inputs["Email Signature"] == SIGNATURE

    outputs, errors, counts, stored = run_export(engine_kind, inputs, tmp_path)

    # No node failed, and the run's one output is the logged record, formatted: no error output, no
    # "No New Support Tickets".
    assert errors == 0
    assert outputs == {"Success": ["## Support ticket\n\n- **Status:** logged"]}
    for node in (GMAIL_READ, ADD_LABEL, KNOWLEDGE_AGENT, ANALYSIS, CREATE_BASE, CREATE_RECORDS):
        assert counts.get(node) == 1, (node, counts)
    assert counts.get(REPLY, 0) == int(auto_reply) and counts.get(FORWARD, 0) == int(not auto_reply)
    assert counts.get(ESCALATION_WRITER, 0) == int(not auto_reply)
    assert NO_TICKETS_OUTPUT not in counts

    # Gmail: the export's query found the ticket, which is now labelled processed...
    (listing,) = [
        r for r in gmail_server.requests if r["method"] == "GET" and r["path"].endswith("/messages")
    ]
    assert listing["query"]["q"] == [QUERY]
    processed = gmail_server.label_names()["agent-processed"]
    assert processed in gmail_server.messages[SUPPORT_TICKET_ID]["labelIds"]
    # ...and answered in its thread, or forwarded to the escalation address with the AI's analysis.
    (sent,) = gmail_server.sent
    if auto_reply:
        assert sent["to"] == [SUPPORT_CUSTOMER] and sent["threadId"] == SUPPORT_TICKET_ID
        assert sent["subject"] == f"Re: {SUPPORT_SUBJECT}"
        assert sent["in_reply_to"] == sent["references"] == "<ticket-7781@customer.example>"
        assert sent["body"] == f"{SUPPORT_REPLY}\n\n{SIGNATURE}"
    else:
        assert sent["to"] == [SUPPORT_ESCALATION_EMAIL] and sent["subject"] == f"Fwd: {SUPPORT_SUBJECT}"
        assert "Hello Human Support Team" in sent["body"]
        assert "rotate API keys every 90 days" in sent["body"]  # the forwarded question
        (escalation,) = [r for r in llm.requests if "escalating a customer" in json.dumps(r["body"])]
        assert "workspace-wide rotation policies" in json.dumps(escalation["body"])  # the analysis

    # The sub-agent mapped the docs site, and its decision maker called the FireCrawl Extract tool (a
    # 15 s CountdownTimer after it), then answered with the tool's result in its conversation.
    fc = [(r["method"], r["path"], r["body"]) for r in firecrawl_server.requests]
    assert [b["url"] for m, p, b in fc if p == "/v2/map"] == [SUPPORT_DOCS_URL]
    assert [(b["urls"], b["prompt"]) for m, p, b in fc if p == "/v2/extract" and m == "POST"] == [
        ([SUPPORT_DOCS_PAGE], EXTRACT_PROMPT)
    ]
    assert not [p for m, p, b in fc if p.startswith("/v2/crawl")]
    assert instant_timers == [15]
    decisions = [r["body"] for r in llm.requests if r["body"].get("tools")]
    assert len(decisions) == 2
    tools = {t["function"]["name"] for t in decisions[0]["tools"]}
    assert {"firecrawlextractblock", "firecrawlcrawlblock"} <= tools
    first_prompt = json.dumps(decisions[0]["messages"])
    assert SUPPORT_DOCS_PAGE in first_prompt and "rotate API keys every 90 days" in first_prompt
    tool_answers = [m for m in decisions[1]["messages"] if m.get("role") == "tool"]
    assert len(tool_answers) == 1 and EXTRACT_PROMPT in tool_answers[0]["content"]
    # The sub-agent's findings reached the analysis, with the customer's email.
    (analysis,) = [
        r["body"] for r in llm.requests if "DOCUMENTATION RESEARCH FINDINGS" in json.dumps(r["body"])
    ]
    analysed = json.dumps(analysis["messages"])
    assert "<confidence_score>92</confidence_score>" in analysed and "every 90 days" in analysed

    # Airtable: a new base in the user's workspace, its ids persisted, and one record for the ticket.
    (base,) = airtable_server.bases.values()
    assert base["name"] == "AutoGPT - Customer Support Agent" and base["workspaceId"] == WORKSPACE_ID
    (table,) = base["tables"]
    assert sorted(stored.values()) == sorted([base["id"], table["id"]])
    (record,) = base["records"][table["id"]]
    fields = dict(record["fields"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", fields.pop("Timestamp"))
    assert fields == {
        "Email ID": SUPPORT_TICKET_ID,
        "Email Received": "Wed, 04 Jun 2025 09:30:00 +0000",
        "Sender": SUPPORT_CUSTOMER,
        "Subject": SUPPORT_SUBJECT,
        "Confidence Score": 92 if auto_reply else 55,
        "Confidence Threshold": 70,
        "Status": "Auto-replied" if auto_reply else "Escalated",
        "Reasoning": "The docs describe key rotation step by step."
        if auto_reply
        else "The docs do not cover workspace-wide rotation policies.",
    }
