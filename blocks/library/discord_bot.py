"""ReadDiscordMessagesBlock and SendDiscordMessageBlock (AutoGPT blocks/discord/bot_blocks.py), on discord.py.

Read logs in as the bot, opens a gateway session and waits for the next message not sent by the bot
itself; it yields the message's content (with the text of a first `.txt`/`.py` attachment appended, as
AutoGPT does), id, channel id, channel name, author id and author name. Send logs in and posts to a
text channel given by id or by name (optionally only in the server `server_name`), in chunks of 2,000
characters, and yields `status` ("Message sent", or why not), the last message's id and the channel id.

The bot token, first match wins:
1. the node's credential (pin `credentials`, provider "discord", type api_key: AutoGPT's), resolved by
   the engine;
2. the legacy pin `discord_bot_token` that older AutoGPT exports link from a StoreValue node (its value
   travels through the graph in the clear: prefer a stored credential).

Where the API is, read when the node runs: AGENTFLOW_DISCORD_API_URL (default https://discord.com/api/v10).
For any other URL the gateway is the one that URL's `GET /gateway/bot` names. Every host the blocks
connect to (the API, the gateway, an attachment's URL) must resolve to public addresses unless
`ctx.settings["allow_private_addresses"]` (the outbound policy, blocks/outbound); a non-default API
URL is checked before anything is sent, and every connection goes to the address the connector's
checked resolver answered (resolved once per connection, so a second DNS answer cannot move it).

Read waits at most AGENTFLOW_DISCORD_READ_TIMEOUT seconds (default 600) for a message, then fails with
an error saying so: AutoGPT waits forever, which would keep a bot graph's run open for ever.

discord.py keeps the API base in a class attribute (`discord.http.Route.BASE`) and the gateway in
another (`DiscordWebSocket.DEFAULT_GATEWAY`). Neither is touched: each run's client gets its own
`http.request` (rewrites the URL of each route from Route.BASE to the run's API URL) and
`http.ws_connect` (swaps Discord's gateway for the run's), so concurrent runs with different URLs in
one process do not see each other's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import Field, SecretStr

from blocks.outbound import (
    OutboundPolicy,
    RequestRefused,
    checked_aiohttp_resolver,
    normalise_url,
    system_resolve,
)
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    Credentials,
    CredentialsField,
    RunContext,
)

DEFAULT_API_URL = "https://discord.com/api/v10"
API_URL_VAR = "AGENTFLOW_DISCORD_API_URL"
READ_TIMEOUT_VAR = "AGENTFLOW_DISCORD_READ_TIMEOUT"
DEFAULT_READ_TIMEOUT = 600.0
CONNECT_TIMEOUT = 60.0  # log in and open the gateway session (discord.py retries a failing gateway)
SEND_TIMEOUT = 120.0
MESSAGE_LIMIT = 2000  # Discord's limit on one message's content
MAX_ATTACHMENT_BYTES = 5_000_000
TEXT_ATTACHMENTS = (".txt", ".py")
DISCORD_CREDENTIALS = (CredentialsField("credentials", provider="discord", type="api_key", optional=True),)


def load_discord() -> Any:
    """discord.py, imported on first use (about 0.5 s). Its voice support imports `audioop`, which
    Python 3.11 and 3.12 flag as deprecated; that warning is not ours to show (nor, under -W error,
    to fail on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*audioop.*", category=DeprecationWarning)
        import discord

    # A text bot has no use for voice: not the one-time "PyNaCl/davey is not installed" log warnings.
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    return discord


class DiscordBlockError(Exception):
    """A failure the block reports as its `error` output (AutoGPT raises ValueError with the text)."""


@dataclass(frozen=True)
class DiscordEndpoint:
    token: SecretStr
    api_url: str
    allow_private: bool

    @property
    def is_default(self) -> bool:
        return self.api_url == DEFAULT_API_URL

    def scrub(self, text: str) -> str:
        token = self.token.get_secret_value()
        return text.replace(token, "***") if len(token) >= 4 else text


def resolve_discord(token_pin: str, ctx: RunContext) -> DiscordEndpoint:
    credential: Credentials | None = ctx.credentials.get("credentials")
    token = credential.secret.get_secret_value() if credential is not None else (token_pin or "")
    token = token.strip()
    if not token:
        raise DiscordBlockError(
            "no Discord bot token: give the node a discord credential (pin 'credentials'), "
            "or link the legacy pin 'discord_bot_token'"
        )
    api_url = (os.environ.get(API_URL_VAR) or DEFAULT_API_URL).strip().rstrip("/")
    return DiscordEndpoint(SecretStr(token), api_url, bool(ctx.settings.get("allow_private_addresses")))


def read_timeout() -> float:
    raw = os.environ.get(READ_TIMEOUT_VAR, "").strip()
    if not raw:
        return DEFAULT_READ_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise DiscordBlockError(f"{READ_TIMEOUT_VAR} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise DiscordBlockError(f"{READ_TIMEOUT_VAR} must be positive, not {raw!r}")
    return value


async def check_host(url: str, allow_private: bool) -> None:
    """The outbound policy's address rule, for an http(s) or ws(s) URL, checked before anything is sent
    (RequestRefused); the connections themselves are checked again by the connector's resolver."""
    if url.startswith(("ws://", "wss://")):
        url = "http" + url[2:]
    await OutboundPolicy(system_resolve, allow_private).pin(normalise_url(url))


def make_client(discord: Any, intents: Any, endpoint: DiscordEndpoint) -> Any:
    """A discord.py client for one execution, pointed at the run's API (see the module docstring)."""
    import aiohttp
    import yarl

    # Every connection (REST and gateway) goes to the checked address its host resolved to.
    policy = OutboundPolicy(system_resolve, endpoint.allow_private)
    connector = aiohttp.TCPConnector(limit=0, resolver=checked_aiohttp_resolver(policy))
    client = discord.Client(intents=intents, connector=connector)
    http = client.http
    send_request, open_websocket = http.request, http.ws_connect
    route_class = discord.http.Route
    discord_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    gateway: list[yarl.URL] = []  # the run's gateway, asked for once

    async def request(route: Any, **kwargs: Any) -> Any:
        base = route_class.BASE
        if not endpoint.is_default and route.url.startswith(base):
            route.url = endpoint.api_url + route.url[len(base) :]
        return await send_request(route, **kwargs)

    async def ws_connect(url: str, *, compress: int = 0) -> Any:
        target = yarl.URL(url)
        if not endpoint.is_default and target.host == discord_gateway.host:
            if not gateway:
                _, named, _ = await http.get_bot_gateway()
                gateway.append(yarl.URL(named))
            target = gateway[0].with_query(target.query)
        await check_host(str(target), endpoint.allow_private)
        return await open_websocket(str(target), compress=compress)

    # Instance attributes: HTTPClient's own methods call self.request / self.ws_connect, so these
    # take effect for this client only.
    http.request = request
    http.ws_connect = ws_connect
    return client


def describe_failure(exc: BaseException, endpoint: DiscordEndpoint) -> str:
    """AutoGPT's wording ("Login error occurred: ...", "An error occurred: ..."), without the token."""
    if isinstance(exc, DiscordBlockError | RequestRefused):
        text = str(exc)
    elif type(exc).__name__ == "LoginFailure":
        text = f"Login error occurred: {exc}"
    else:
        text = f"An error occurred: {type(exc).__name__}: {exc}"
    return endpoint.scrub(text)


async def _release_connector(client: Any) -> None:
    """The connector given to the client is closed with its HTTP session, which exists only once login
    began: close it here too, for an execution cancelled or failed before that."""
    import aiohttp

    connector = client.http.connector
    if isinstance(connector, aiohttp.BaseConnector) and not connector.closed:
        await connector.close()


async def _close(client: Any, runner: asyncio.Task[Any] | None) -> None:
    await client.close()
    await _release_connector(client)
    if runner is not None and not runner.done():
        try:
            await asyncio.wait_for(asyncio.shield(runner), timeout=5)
        except (TimeoutError, Exception):
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner
    elif runner is not None:
        with contextlib.suppress(BaseException):
            runner.result()


TEST_CREDENTIALS = Credentials(
    id="01234567-89ab-cdef-0123-456789abcdef",
    provider="discord",
    type="api_key",
    secret=SecretStr("test_api_key"),
    owner_user_id="local",
    title="Mock Discord API key",
)


def _mock_listen(endpoint: DiscordEndpoint, timeout: float) -> Any:
    async def listen() -> dict[str, Any]:
        assert endpoint.token.get_secret_value() == "test_api_key"
        return {
            "message_content": "Hello!\n\nFile from user: example.txt\nContent: This is the content of the file.",
            "message_id": "123456789012345678",
            "channel_id": "987654321098765432",
            "channel_name": "general",
            "user_id": "111222333444555666",
            "username": "test_user",
        }

    return listen()


class ReadDiscordMessagesBlock(Block):
    id = "df06086a-d5ac-4abb-9996-2ad0acb2eff7"
    description = "Reads messages from a Discord channel using a bot token."
    categories = frozenset({BlockCategory.SOCIAL})
    credentials = DISCORD_CREDENTIALS
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        credentials: Any = Field(default=None, description='A Discord bot credential reference: {"id": ...}')
        discord_bot_token: str = Field(
            default="",
            description="Legacy: the bot token, as older AutoGPT exports link it (prefer credentials)",
        )

    class Output(BlockOutput):
        message_content: str = Field(description="The content of the message received")
        message_id: str = Field(description="The ID of the message")
        channel_id: str = Field(description="The ID of the channel")
        channel_name: str = Field(description="The name of the channel the message was received from")
        user_id: str = Field(description="The ID of the user who sent the message")
        username: str = Field(description="The username of the user who sent the message")

    self_tests = (
        BlockSelfTest(
            input={"continuous_read": False},
            output=[
                (
                    "message_content",
                    "Hello!\n\nFile from user: example.txt\nContent: This is the content of the file.",
                ),
                ("message_id", "123456789012345678"),
                ("channel_id", "987654321098765432"),
                ("channel_name", "general"),
                ("user_id", "111222333444555666"),
                ("username", "test_user"),
            ],
            mocks={"listen": _mock_listen},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={},
            output=[("error", lambda e: "no Discord bot token" in e)],
            mocks={"listen": _mock_listen},
        ),
    )

    async def listen(self, endpoint: DiscordEndpoint, timeout: float) -> dict[str, Any]:
        """Log in, wait for the next message from someone else, and describe it (AutoGPT's run_bot)."""
        if not endpoint.is_default:
            await check_host(endpoint.api_url, endpoint.allow_private)
        discord = load_discord()
        intents = discord.Intents.default()
        intents.message_content = True
        client = make_client(discord, intents, endpoint)
        loop = asyncio.get_running_loop()
        received: asyncio.Future[dict[str, Any]] = loop.create_future()
        connected = asyncio.Event()

        async def on_connect() -> None:
            connected.set()

        async def on_message(message: Any) -> None:
            if message.author == client.user or received.done():
                return
            first = message.attachments[0] if message.attachments else None
            received.set_result(
                {
                    "message_content": message.content,
                    "message_id": str(message.id),
                    "channel_id": str(message.channel.id),
                    "channel_name": getattr(message.channel, "name", None),
                    "user_id": str(message.author.id),
                    "username": message.author.name,
                    "attachment": (first.filename, first.url) if first is not None else None,
                }
            )

        client.event(on_connect)
        client.event(on_message)
        runner: asyncio.Task[Any] | None = None
        ready: asyncio.Task[Any] | None = None
        stopped_first = False  # the client stopped (login failed, connection closed) before any message
        async with client:
            try:
                runner = asyncio.create_task(client.start(endpoint.token.get_secret_value()))
                ready = asyncio.create_task(connected.wait())
                # The timeout is for the wait on a message, counted once the session is up.
                await asyncio.wait(
                    {runner, received, ready}, timeout=CONNECT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
                )
                if connected.is_set() and not (runner.done() or received.done()):
                    await asyncio.wait(
                        {runner, received}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                stopped_first = runner.done() and not received.done()
            finally:
                if ready is not None:
                    ready.cancel()
                await _close(client, runner)
        if not received.done():
            received.cancel()
            if stopped_first:
                assert runner is not None
                failure = None if runner.cancelled() else runner.exception()
                if failure is not None:
                    raise failure
                raise DiscordBlockError("the connection to Discord closed before a message arrived")
            if not connected.is_set():
                raise DiscordBlockError(
                    f"could not log in and open a gateway session within {CONNECT_TIMEOUT:g} s"
                )
            raise DiscordBlockError(f"no message arrived within {timeout:g} s ({READ_TIMEOUT_VAR})")
        result = received.result()
        attachment = result.pop("attachment")
        if (
            attachment is not None
            and attachment[0].endswith(TEXT_ATTACHMENTS)
            and result["message_content"] is not None
        ):
            filename, url = attachment
            text = await self.fetch_attachment(url, endpoint.allow_private)
            result["message_content"] += f"\n\nFile from user: {filename}\nContent: {text}"
        return result

    async def fetch_attachment(self, url: str, allow_private: bool) -> str:
        """GET an attachment's URL (no token: Discord's attachment URLs are signed), checked like the web
        blocks' requests and sent to the checked address."""
        parsed = normalise_url(url)
        target, sni = await OutboundPolicy(system_resolve, allow_private).pin(parsed)
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=15.0), follow_redirects=False, trust_env=False
            ) as http,
            http.stream(
                "GET",
                target,
                headers={"Host": parsed.netloc.decode("ascii")},
                extensions={"sni_hostname": sni} if sni else None,
            ) as response,
        ):
            if response.status_code >= 400:
                raise DiscordBlockError(f"could not fetch attachment {url!r}: HTTP {response.status_code}")
            body = b""
            async for part in response.aiter_bytes():
                body += part
                if len(body) > MAX_ATTACHMENT_BYTES:
                    raise DiscordBlockError(f"attachment {url!r} is larger than {MAX_ATTACHMENT_BYTES} bytes")
            return body.decode(response.encoding or "utf-8", errors="replace")

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        endpoint: DiscordEndpoint | None = None
        try:
            endpoint = resolve_discord(input.discord_bot_token, ctx)
            result = await self.listen(endpoint, read_timeout())
        except Exception as exc:
            yield "error", describe_failure(exc, endpoint) if endpoint is not None else str(exc)
            return
        if (
            result.get("message_content") is None
            or not result.get("channel_name")
            or result.get("username") is None
        ):
            yield "error", "No message, channel name, or username received."
            return
        for pin in ("message_content", "message_id", "channel_id", "channel_name", "user_id", "username"):
            yield pin, result[pin]


def chunk_message(message: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Splits a message into chunks not exceeding the Discord limit (AutoGPT's chunk_message)."""
    return [message[i : i + limit] for i in range(0, len(message), limit)]


def _mock_send(endpoint: DiscordEndpoint, channel_name: str, server_name: str, message_content: str) -> Any:
    async def send() -> dict[str, str]:
        return {
            "status": "Message sent",
            "message_id": "123456789012345678",
            "channel_id": "987654321098765432",
        }

    return send()


class SendDiscordMessageBlock(Block):
    id = "d0822ab5-9f8a-44a3-8971-531dd0178b6b"
    description = "Sends a message to a Discord channel using a bot token."
    categories = frozenset({BlockCategory.SOCIAL})
    credentials = DISCORD_CREDENTIALS
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        credentials: Any = Field(default=None, description='A Discord bot credential reference: {"id": ...}')
        message_content: str = Field(description="The content of the message to send")
        channel_name: str = Field(description="Channel ID or channel name to send the message to")
        server_name: str = Field(default="", description="Server name (only needed if using channel name)")
        discord_bot_token: str = Field(
            default="",
            description="Legacy: the bot token, as older AutoGPT exports link it (prefer credentials)",
        )

    class Output(BlockOutput):
        status: str = Field(description="The status of the operation (e.g., 'Message sent', 'Error')")
        message_id: str = Field(description="The ID of the sent message")
        channel_id: str = Field(description="The ID of the channel where the message was sent")

    self_tests = (
        BlockSelfTest(
            input={"channel_name": "general", "message_content": "Hello, Discord!"},
            output=[
                ("status", "Message sent"),
                ("message_id", "123456789012345678"),
                ("channel_id", "987654321098765432"),
            ],
            mocks={"send_message": _mock_send},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def send_message(
        self, endpoint: DiscordEndpoint, channel_name: str, server_name: str, message_content: str
    ) -> dict[str, str]:
        """Log in (REST only: no gateway session is needed to post), find the channel, post the chunks."""
        if not endpoint.is_default:
            await check_host(endpoint.api_url, endpoint.allow_private)
        discord = load_discord()
        intents = discord.Intents.default()
        intents.guilds = True
        client = make_client(discord, intents, endpoint)
        try:
            async with client:
                await client.login(endpoint.token.get_secret_value())
                channel = await self._find_channel(client, discord, channel_name, server_name)
                if channel is None:
                    return {"status": f"Channel not found: {channel_name}"}
                if not hasattr(channel, "send"):
                    return {"status": f"Channel {channel_name} cannot receive messages (not a text channel)"}
                last = None
                for chunk in chunk_message(message_content):
                    last = await channel.send(chunk)
                return {
                    "status": "Message sent",
                    "message_id": str(last.id) if last is not None else "",
                    "channel_id": str(channel.id),
                }
        finally:
            await _release_connector(client)

    @staticmethod
    async def _find_channel(client: Any, discord: Any, channel_name: str, server_name: str) -> Any:
        """By id first, then the first text channel of that name (in position order) of the bot's
        servers, or of `server_name` only when it is given."""
        with contextlib.suppress(ValueError):
            channel_id = int(channel_name)
            with contextlib.suppress(discord.NotFound, discord.Forbidden, discord.InvalidData):
                return await client.fetch_channel(channel_id)
        async for guild in client.fetch_guilds(limit=None):
            if server_name and guild.name != server_name:
                continue
            channels = sorted(
                (c for c in await guild.fetch_channels() if isinstance(c, discord.TextChannel)),
                key=lambda c: (c.position, c.id),
            )
            for channel in channels:
                if channel.name == channel_name:
                    return channel
        return None

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        endpoint: DiscordEndpoint | None = None
        try:
            endpoint = resolve_discord(input.discord_bot_token, ctx)
            async with asyncio.timeout(SEND_TIMEOUT):
                result = await self.send_message(
                    endpoint, input.channel_name, input.server_name, input.message_content
                )
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = DiscordBlockError(f"sending to Discord did not finish within {SEND_TIMEOUT:g} s")
            yield "error", describe_failure(exc, endpoint) if endpoint is not None else str(exc)
            return
        yield "status", result.get("status", "Unknown error")
        if "message_id" in result:
            yield "message_id", result["message_id"]
        if "channel_id" in result:
            yield "channel_id", result["channel_id"]
