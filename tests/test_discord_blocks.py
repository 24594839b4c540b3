"""The Discord bot blocks (blocks/library/discord_bot.py) on discord.py against the local stand-in
(tests/support_discord.py), and the three real AutoGPT Discord bot exports end to end, on the reference
engine and as compiled Dagster jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import DagsterInstance
from pydantic import SecretStr
from support_blocks import credential as make_credential
from support_blocks import run_block, secret_free
from support_discord import MESSAGE_CONTENT, TEST_DISCORD_TOKEN, FakeDiscord
from support_servers import JinaStyleServer, ScriptedLLMServer
from test_llm_blocks import API_KEY, JINA_KEY, EngineWithCredentials, Resolver, with_credential_references

from agent_defs.engine import RunOptions, RunStatus
from agent_defs.graph import load_graph_file
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.paths import shared_dir
from blocks import REGISTRY, Credentials
from blocks.library.discord_bot import (
    DEFAULT_API_URL,
    DiscordEndpoint,
    ReadDiscordMessagesBlock,
    SendDiscordMessageBlock,
    check_host,
    load_discord,
)
from blocks.outbound import OutboundPolicy, RequestRefused, checked_aiohttp_resolver

READ_TIMEOUT = (
    0.5  # seconds a Read waits (once connected) for a message; a bot loop's last Read waits this long
)
BAD_TOKEN = "discord-WRONG-1357-do-not-leak"
EXPORTS_DIR = shared_dir() / "autogpt-agents"
READ_ID = "df06086a-d5ac-4abb-9996-2ad0acb2eff7"
SEND_ID = "d0822ab5-9f8a-44a3-8971-531dd0178b6b"


@pytest.fixture
def discord(
    discord_server: FakeDiscord,
    llm_server: ScriptedLLMServer,
    jina_server: JinaStyleServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeDiscord]:
    discord_server.reset()
    llm_server.reset()
    monkeypatch.setenv("AGENTFLOW_DISCORD_API_URL", discord_server.api_url)
    monkeypatch.setenv("AGENTFLOW_DISCORD_READ_TIMEOUT", str(READ_TIMEOUT))
    monkeypatch.setenv("AGENTFLOW_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AGENTFLOW_LLM_API_KEY", API_KEY)
    monkeypatch.setenv("AGENTFLOW_LLM_TIMEOUT", "5")
    monkeypatch.setenv("AGENTFLOW_JINA_BASE_URL", jina_server.url)
    monkeypatch.setenv("AGENTFLOW_ALLOW_PRIVATE_ADDRESSES", "1")
    yield discord_server
    llm_server.reset()


def credential(token: str = TEST_DISCORD_TOKEN) -> dict[str, Credentials]:
    return make_credential("discord", token, cred_id="d", title="bot")


def assert_no_secret(outputs: Any) -> None:
    assert secret_free(outputs, TEST_DISCORD_TOKEN, BAD_TOKEN, API_KEY, JINA_KEY)


# --- Read ---------------------------------------------------------------------------------------------
def test_read_yields_the_next_message_with_its_text_attachment(discord: FakeDiscord) -> None:
    discord.script_message("my own earlier reply", from_bot=True)  # ignored, as AutoGPT's on_message does
    message = discord.script_message(
        "Please review", author="alice", attachment=("notes.py", b"print('hi')\n")
    )
    outputs = run_block(ReadDiscordMessagesBlock(), {}, credential())
    assert outputs == [
        ("message_content", "Please review\n\nFile from user: notes.py\nContent: print('hi')\n"),
        ("message_id", message["id"]),
        ("channel_id", str(discord.channel("general").id)),
        ("channel_name", "general"),
        ("user_id", message["author"]["id"]),
        ("username", "alice"),
    ]
    # discord.py was pointed at the stand-in: its REST login, the gateway URL from GET /gateway/bot,
    # one gateway session that asked for the message content intent.
    paths = [r["path"] for r in discord.requests]
    assert paths[:3] == ["/api/v10/users/@me", "/api/v10/oauth2/applications/@me", "/api/v10/gateway/bot"]
    assert discord.sessions == 1 and discord.identifies[0]["intents"] & MESSAGE_CONTENT
    assert discord.pending() == 0


def test_read_appends_only_text_attachments(discord: FakeDiscord) -> None:
    discord.script_message("a picture", channel="random", author="bob", attachment=("cat.png", b"\x89PNG"))
    outputs = dict(run_block(ReadDiscordMessagesBlock(), {}, credential()))
    assert outputs["message_content"] == "a picture"
    assert outputs["channel_name"] == "random" and outputs["username"] == "bob"


def test_read_times_out_with_a_clear_error(discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_DISCORD_READ_TIMEOUT", "0.3")
    outputs = run_block(ReadDiscordMessagesBlock(), {}, credential())
    assert outputs == [("error", "no message arrived within 0.3 s (AGENTFLOW_DISCORD_READ_TIMEOUT)")]
    assert discord.sessions == 1  # it was connected and listening


def test_read_and_send_with_a_bad_token_are_clear_errors_without_the_token(discord: FakeDiscord) -> None:
    discord.script_message("never read")
    login_error = "Login error occurred: Improper token has been passed."
    for block, data in (
        (ReadDiscordMessagesBlock(), {}),
        (SendDiscordMessageBlock(), {"channel_name": "general", "message_content": "hi"}),
    ):
        by_credential = run_block(block, data, credential(BAD_TOKEN))
        by_legacy_pin = run_block(block, {**data, "discord_bot_token": BAD_TOKEN})
        assert by_credential == by_legacy_pin == [("error", login_error)]
        assert_no_secret([by_credential, by_legacy_pin])
    assert discord.sessions == 0 and discord.sent == [] and discord.pending() == 1


def test_a_gateway_that_refuses_identify_is_a_clear_error(discord: FakeDiscord) -> None:
    discord.reject_identify = True
    discord.script_message("never read")
    ((pin, error),) = run_block(ReadDiscordMessagesBlock(), {}, credential())
    assert pin == "error" and "4004" in error and error.startswith("An error occurred: ConnectionClosed")
    assert_no_secret(error)


def test_without_any_token_the_blocks_say_what_to_give(discord: FakeDiscord) -> None:
    ((pin, error),) = run_block(ReadDiscordMessagesBlock(), {})
    assert pin == "error" and "no Discord bot token" in error and "credentials" in error
    assert discord.requests == []


# --- Send ---------------------------------------------------------------------------------------------
def test_send_by_channel_name_chunks_long_messages(discord: FakeDiscord) -> None:
    text = "".join(f"{i:05d} " for i in range(750))  # 4,500 characters
    outputs = run_block(
        SendDiscordMessageBlock(), {"channel_name": "general", "message_content": text}, credential()
    )
    general = discord.channel("general", "AgentFlow")
    assert [(s["channel_id"], len(s["content"])) for s in discord.sent] == [(general.id, 2000)] * 2 + [
        (general.id, 500)
    ]
    assert "".join(s["content"] for s in discord.sent) == text
    assert [pin for pin, _ in outputs] == ["status", "message_id", "channel_id"]
    assert outputs[0] == ("status", "Message sent")
    assert outputs[2] == ("channel_id", str(general.id))
    assert int(outputs[1][1]) > 0
    # REST only: no gateway session is opened to post.
    assert discord.sessions == 0


def test_send_by_server_name_by_id_and_the_not_found_statuses(discord: FakeDiscord) -> None:
    other = discord.channel("general", "Other")
    outputs = run_block(
        SendDiscordMessageBlock(),
        {"channel_name": "general", "server_name": "Other", "message_content": "hello other"},
        credential(),
    )
    assert outputs[0] == ("status", "Message sent") and outputs[2] == ("channel_id", str(other.id))
    random = discord.channel("random")
    outputs = run_block(
        SendDiscordMessageBlock(), {"channel_name": str(random.id), "message_content": "by id"}, credential()
    )
    assert outputs[2] == ("channel_id", str(random.id))
    assert [(s["channel"], s["content"]) for s in discord.sent] == [
        ("general", "hello other"),
        ("random", "by id"),
    ]
    # A voice channel is not among a server's text channels; an unknown name is not found either.
    for name in ("lounge", "nowhere"):
        outputs = run_block(
            SendDiscordMessageBlock(), {"channel_name": name, "message_content": "x"}, credential()
        )
        assert outputs == [("status", f"Channel not found: {name}")]
    assert len(discord.sent) == 2


def test_send_with_the_legacy_token_pin(discord: FakeDiscord) -> None:
    outputs = run_block(
        SendDiscordMessageBlock(),
        {"channel_name": "general", "message_content": "legacy", "discord_bot_token": TEST_DISCORD_TOKEN},
    )
    assert outputs[0] == ("status", "Message sent")
    assert_no_secret(outputs)


# --- the private-address rule and per-run endpoints -------------------------------------------------
def test_a_private_api_url_is_refused_unless_allowed(discord: FakeDiscord) -> None:
    discord.script_message("never read")
    for block, data in (
        (ReadDiscordMessagesBlock(), {}),
        (SendDiscordMessageBlock(), {"channel_name": "general", "message_content": "hi"}),
    ):
        ((pin, error),) = run_block(block, data, credential(), allow_private=False)
        assert pin == "error" and "127.0.0.1" in error and "allow_private_addresses" in error
    assert discord.requests == [] and discord.sessions == 0


def test_the_gateway_and_every_resolved_host_are_checked_too() -> None:
    async def go() -> None:
        with pytest.raises(RequestRefused, match="allow_private_addresses"):
            await check_host("ws://127.0.0.1:1/gateway", allow_private=False)
        with pytest.raises(RequestRefused, match="allow_private_addresses"):
            await check_host("wss://10.1.2.3/gateway", allow_private=False)
        await check_host("ws://127.0.0.1:1/gateway", allow_private=True)
        resolver = checked_aiohttp_resolver(OutboundPolicy())
        try:
            with pytest.raises(RequestRefused, match="non-public"):
                await resolver.resolve("localhost", 443)
        finally:
            await resolver.close()

    asyncio.run(go())


def test_concurrent_runs_use_their_own_api_without_touching_discord_py_globals(discord: FakeDiscord) -> None:
    """Two clients at two different APIs at once, in one event loop: each server sees only its own
    run, and discord.py's class-level API base and gateway are never changed."""
    second = FakeDiscord(token="second-bot-token-0000").start()
    discord_py = load_discord()
    base, gateway = discord_py.http.Route.BASE, discord_py.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        discord.script_message("for the first bot")
        second.script_message("for the second bot", author="zed")

        async def go() -> list[Any]:
            first_endpoint = DiscordEndpoint(SecretStr(discord.token), discord.api_url, True)
            second_endpoint = DiscordEndpoint(SecretStr(second.token), second.api_url, True)
            read, send = ReadDiscordMessagesBlock(), SendDiscordMessageBlock()
            return await asyncio.gather(
                read.listen(first_endpoint, 5),
                read.listen(second_endpoint, 5),
                send.send_message(first_endpoint, "general", "", "one"),
                send.send_message(second_endpoint, "random", "", "two"),
            )

        first_read, second_read, _, _ = asyncio.run(go())
        assert discord_py.http.Route.BASE == base == DEFAULT_API_URL
        assert gateway == discord_py.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    finally:
        second.stop()
    assert (first_read["message_content"], first_read["username"]) == ("for the first bot", "alice")
    assert (second_read["message_content"], second_read["username"]) == ("for the second bot", "zed")
    assert [(s["channel"], s["content"]) for s in discord.sent] == [("general", "one")]
    assert [(s["channel"], s["content"]) for s in second.sent] == [("random", "two")]


def test_block_description_matches_autogpt() -> None:
    read, send = REGISTRY.get(READ_ID), REGISTRY.get(SEND_ID)
    assert read is not None and send is not None
    for block in (read, send):
        assert block.describe()["credentials"] == [
            {"input": "credentials", "provider": "discord", "type": "api_key"}
        ]
        assert block.describe()["categories"] == ["SOCIAL"]
    assert list(read.describe()["outputs"]) == [
        "error",
        "message_content",
        "message_id",
        "channel_id",
        "channel_name",
        "user_id",
        "username",
    ]
    assert list(send.describe()["outputs"]) == ["error", "status", "message_id", "channel_id"]
    assert {"credentials", "message_content", "channel_name", "server_name"} <= set(send.describe()["inputs"])


# --- the real exports ---------------------------------------------------------------------------------
# Per export: the messages users send, what the local LLM answers, and what the bot must post.
BOTS: dict[str, dict[str, Any]] = {
    "Discord_Bot_Chat_To_LLM_v5.json": {
        "messages": [
            ("alice", "!chat What is 2+2?"),
            ("bob", "just chatting"),
            ("carol", "!chat Tell a joke"),
        ],
        # AutoGPT's per-pin FIFO, as the export is wired: bob's message is no command, but his
        # "bob Said: " still waits in the prompt's join, and carol's command text fills it.
        "llm": {"alice Said: What is 2+2?": "It is 4.", "bob Said: Tell a joke": "A joke."},
        "posted": ["It is 4.", "A joke."],
    },
    "Discord_Chatbot_with_History_v145.json": {
        "messages": [("dana", "Hi, I'm Dana"), ("dana", "What's my name?")],
        "llm": {"What's my name?": "Your name is Dana.", "Hi, I'm Dana": "Hello Dana!"},
        "posted": ["Hello Dana!", "Your name is Dana."],
    },
    "Discord_Search_Bot_v17.json": {
        "messages": [("erin", "!search agent graphs"), ("frank", "no command here")],
        "llm": {"erin Asked the question: agent graphs": "@erin agent graphs are graphs of agents."},
        "posted": ["@erin agent graphs are graphs of agents."],
    },
}


def _script(discord: FakeDiscord, llm: ScriptedLLMServer, bot: dict[str, Any]) -> None:
    discord.reset()
    llm.reset()
    for author, text in bot["messages"]:
        discord.script_message(text, author=author)
    for match, reply in bot["llm"].items():
        llm.script(match, {"content": reply})


def _check_conversation(name: str, llm: ScriptedLLMServer) -> None:
    if name == "Discord_Chatbot_with_History_v145.json":
        # The second call carries the first exchange: the graph's history loop works.
        messages = llm.requests[-1]["body"]["messages"]
        assert [(m["role"], m["content"]) for m in messages[1:]] == [
            ("user", "Hi, I'm Dana"),
            ("assistant", "Hello Dana!"),
            ("user", "What's my name?"),
        ]
    if name == "Discord_Search_Bot_v17.json":
        prompt = llm.requests[0]["body"]["messages"][-1]["content"]
        assert "Result 1 for agent graphs" in prompt  # the web search's results reached the LLM


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.mark.parametrize("name", sorted(BOTS))
def test_discord_bot_export_end_to_end(
    name: str, discord: FakeDiscord, llm_server: ScriptedLLMServer, instance: DagsterInstance
) -> None:
    bot = BOTS[name]
    graph = with_credential_references(load_graph_file(EXPORTS_DIR / name))
    assert validate_graph(graph) == []
    reads = len(bot["messages"]) + 1  # one per message, and the last one that hears nothing

    _script(discord, llm_server, bot)
    reference = EngineWithCredentials(credentials=Resolver()).run_sync(
        graph, {}, RunOptions(settings={"allow_private_addresses": True})
    )
    assert reference.status is RunStatus.COMPLETED, reference.error
    assert [s["content"] for s in discord.sent] == bot["posted"]
    assert {s["channel"] for s in discord.sent} == {"general"}
    read_node = next(n.id for n in graph.nodes if n.block_id == READ_ID)
    assert reference.execution_counts()[read_node] == reads
    # The bot loop ends when no message comes: its last Read's timeout is the run's only error.
    errors = [e.error for e in reference.executions if e.error]
    assert errors == [f"no message arrived within {READ_TIMEOUT:g} s (AGENTFLOW_DISCORD_READ_TIMEOUT)"]
    sends = [e for e in reference.executions if e.block_id == SEND_ID]
    assert [e.outputs[0] for e in sends] == [("status", "Message sent")] * len(bot["posted"])
    _check_conversation(name, llm_server)
    assert discord.sessions == reads and discord.pending() == 0
    assert_no_secret(reference.to_json())

    _script(discord, llm_server, bot)
    job = compile_graph(
        graph, engine=EngineWithCredentials(credentials=Resolver()), console_log_level="ERROR"
    )
    run = job.execute_in_process(run_config={"inputs": {}}, instance=instance, raise_on_error=False)
    compiled = read_run_summary(instance, run.run_id)
    assert compiled["status"] == "COMPLETED", compiled
    assert compiled["node_error_count"] == reference.node_error_count == 1
    assert [s["content"] for s in discord.sent] == bot["posted"]
    _check_conversation(name, llm_server)
    assert discord.sessions == reads and discord.pending() == 0
    assert_no_secret(compiled)
