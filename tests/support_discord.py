"""A local stand-in for Discord (REST API and gateway) on 127.0.0.1, for the Discord bot blocks.

`FakeDiscord` serves, under `/api/v10` (`api_url`), the REST endpoints discord.py calls for a bot:
  GET  /gateway/bot, /gateway                 the gateway's URL (ws://127.0.0.1:<port>/gateway)
  GET  /users/@me, /oauth2/applications/@me   the bot user and its application (login)
  GET  /users/@me/guilds, /guilds/{id}/channels, /channels/{id}     servers and channels
  POST /channels/{id}/messages                recorded in `sent`, answered with the message object
and the gateway websocket protocol (JSON text frames, API v10):
  HELLO (op 10) on connect; HEARTBEAT (op 1) -> HEARTBEAT_ACK (op 11); IDENTIFY (op 2) with the right
  token -> READY dispatch (the servers as unavailable guilds), one GUILD_CREATE per server with its
  channels, then the next scripted message as a MESSAGE_CREATE dispatch (if the session asked for the
  GUILD_MESSAGES intent; content is empty without MESSAGE_CONTENT, as on Discord). A wrong token on
  IDENTIFY closes with 4004; RESUME (op 6) is answered with INVALID_SESSION (op 9, not resumable).
Every REST request must carry `Authorization: Bot <token>`; otherwise 401 `{"message": "401:
Unauthorized", "code": 0}`, which never repeats what was sent. Attachments of scripted messages are
served at /attachments/<id>/<filename>.

Deterministic: ids are counters (snowflake-sized); each gateway session takes the oldest scripted
message not yet delivered (with any of the bot's own messages queued before it), and a session with
nothing to deliver only answers heartbeats (so a reader's timeout ends it). `reject_identify` makes
the gateway refuse IDENTIFY (4004) while REST login still works.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API_PREFIX = "/api/v10"
BOT_ID = 900000000000000001
APPLICATION_ID = 900000000000000002
TEXT, VOICE, CATEGORY = 0, 2, 4
GUILD_MESSAGES = 1 << 9
MESSAGE_CONTENT = 1 << 15
TIMESTAMP = "2025-01-01T00:00:00.000000+00:00"


def _user(user_id: int, name: str, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "global_name": None,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


@dataclass
class Channel:
    id: int
    name: str
    guild_id: int
    type: int = TEXT
    position: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            **({"bitrate": 64000, "user_limit": 0, "rtc_region": None} if self.type == VOICE else {}),
        }


@dataclass
class Guild:
    id: int
    name: str
    channels: list[Channel] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": "1",
            "features": [],
            "roles": [
                {
                    "id": str(self.id),
                    "name": "@everyone",
                    "color": 0,
                    "hoist": False,
                    "position": 0,
                    "permissions": "1071698660929",
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "unavailable": False,
            "member_count": 2,
            "large": False,
            "joined_at": TIMESTAMP,
            "members": [],
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "channels": [c.payload() for c in self.channels],
        }


def _json(data: Any, status: int = 200) -> web.Response:
    """Discord's content type is exactly `application/json` (discord.py parses nothing else)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


TEST_DISCORD_TOKEN = "discord-bot-SECRET-2468-do-not-leak"


class FakeDiscord:
    def __init__(self, token: str = TEST_DISCORD_TOKEN) -> None:
        self.token = token
        self._ids = 1_000_000_000_000_000_00
        self._lock = threading.Lock()
        self.guilds: list[Guild] = []
        self._script: list[dict[str, Any]] = []
        self._attachments: dict[str, bytes] = {}
        self.sent: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []
        self.sessions = 0
        # The gateway refuses every IDENTIFY (close code 4004) although REST login works.
        self.reject_identify = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopped: asyncio.Event | None = None
        self.port = 0
        self.reset()

    # --- the world -----------------------------------------------------------------------------------
    def next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def reset(self) -> None:
        """Two servers: "AgentFlow" (#general, #random, a voice channel "lounge") and "Other" (#general)."""
        with self._lock:
            self._ids = 1_000_000_000_000_000_00
            self._script.clear()
            self._attachments.clear()
            self.sent.clear()
            self.requests.clear()
            self.identifies.clear()
            self.sessions = 0
            self.reject_identify = False
        first = Guild(self.next_id(), "AgentFlow")
        first.channels = [
            Channel(self.next_id(), "general", first.id, position=0),
            Channel(self.next_id(), "random", first.id, position=1),
            Channel(self.next_id(), "lounge", first.id, type=VOICE, position=2),
        ]
        other = Guild(self.next_id(), "Other")
        other.channels = [Channel(self.next_id(), "general", other.id, position=0)]
        self.guilds = [first, other]

    def channel(self, name: str, guild: str | None = None) -> Channel:
        for g in self.guilds:
            if guild is not None and g.name != guild:
                continue
            for c in g.channels:
                if c.name == name:
                    return c
        raise KeyError(name)

    def _channel_by_id(self, channel_id: int) -> Channel | None:
        return next((c for g in self.guilds for c in g.channels if c.id == channel_id), None)

    def script_message(
        self,
        content: str,
        *,
        channel: str = "general",
        guild: str = "AgentFlow",
        author: str = "alice",
        author_id: int = 700000000000000001,
        attachment: tuple[str, bytes] | None = None,
        from_bot: bool = False,
    ) -> dict[str, Any]:
        """Queue a message for the next gateway session; returns its MESSAGE_CREATE payload."""
        target = self.channel(channel, guild)
        message_id = self.next_id()
        attachments = []
        if attachment is not None:
            filename, data = attachment
            attachment_id = self.next_id()
            self._attachments[f"{attachment_id}/{filename}"] = data
            attachments.append(
                {
                    "id": str(attachment_id),
                    "filename": filename,
                    "size": len(data),
                    "url": f"{self.url}/attachments/{attachment_id}/{filename}",
                    "proxy_url": f"{self.url}/attachments/{attachment_id}/{filename}",
                    "content_type": "text/plain; charset=utf-8",
                }
            )
        payload = {
            **self._message(message_id, target, content, attachments),
            "author": _user(BOT_ID, "agentflow-bot", bot=True) if from_bot else _user(author_id, author),
        }
        with self._lock:
            self._script.append(payload)
        return payload

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def _message(
        self, message_id: int, channel: Channel, content: str, attachments: list[Any]
    ) -> dict[str, Any]:
        return {
            "id": str(message_id),
            "channel_id": str(channel.id),
            "guild_id": str(channel.guild_id),
            "content": content,
            "timestamp": TIMESTAMP,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }

    # --- serving -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def start(self) -> FakeDiscord:
        started = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._stopped = asyncio.Event()
            loop.run_until_complete(self._start_site())
            started.set()
            loop.run_until_complete(self._stopped.wait())
            assert self._runner is not None
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-discord", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake Discord server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def _start_site(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{id}/{filename}", self._attachment)
        p = API_PREFIX
        app.router.add_get(p + "/gateway/bot", self._gateway_bot)
        app.router.add_get(p + "/gateway", self._gateway_bot)
        app.router.add_get(p + "/users/@me", self._me)
        app.router.add_get(p + "/oauth2/applications/@me", self._application)
        app.router.add_get(p + "/users/@me/guilds", self._my_guilds)
        app.router.add_get(p + "/guilds/{guild_id}/channels", self._guild_channels)
        app.router.add_get(p + "/channels/{channel_id}", self._get_channel)
        app.router.add_post(p + "/channels/{channel_id}/messages", self._post_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX):
            with self._lock:
                self.requests.append({"method": request.method, "path": request.path})
            if request.headers.get("Authorization") != f"Bot {self.token}":
                return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return await handler(request)

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _me(self, request: web.Request) -> web.Response:
        return _json({**_user(BOT_ID, "agentflow-bot", bot=True), "flags": 0, "verified": True})

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(APPLICATION_ID),
                "name": "agentflow-bot",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": _user(1, "owner"),
                "verify_key": "0" * 64,
                "flags": 0,
                "summary": "",
            }
        )

    async def _my_guilds(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after") or 0)
        limit = int(request.query.get("limit") or 200)
        guilds = [g for g in self.guilds if g.id > after][:limit]
        return _json(
            [
                {
                    "id": str(g.id),
                    "name": g.name,
                    "icon": None,
                    "owner": False,
                    "permissions": "0",
                    "features": [],
                }
                for g in guilds
            ]
        )

    async def _guild_channels(self, request: web.Request) -> web.Response:
        guild_id = int(request.match_info["guild_id"])
        guild = next((g for g in self.guilds if g.id == guild_id), None)
        if guild is None:
            return _json({"message": "Unknown Guild", "code": 10004}, status=404)
        return _json([c.payload() for c in guild.channels])

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel_by_id(int(request.match_info["channel_id"]))
        if channel is None:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        return _json(channel.payload())

    async def _post_message(self, request: web.Request) -> web.Response:
        channel = self._channel_by_id(int(request.match_info["channel_id"]))
        if channel is None:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        body = await request.json()
        content = str(body.get("content") or "")
        if not content or len(content) > 2000:
            return _json(
                {"message": "Invalid Form Body", "code": 50035, "errors": {"content": "length"}}, status=400
            )
        message = {
            **self._message(self.next_id(), channel, content, []),
            "author": _user(BOT_ID, "agentflow-bot", bot=True),
        }
        with self._lock:
            self.sent.append({"channel_id": channel.id, "channel": channel.name, "content": content})
        return _json(message)

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self._attachments.get(f"{request.match_info['id']}/{request.match_info['filename']}")
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="text/plain", charset="utf-8")

    # --- the gateway ---------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sequence = 0

        async def dispatch(event: str, data: Any) -> None:
            nonlocal sequence
            sequence += 1
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": sequence, "d": data}))

        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            op, data = message.get("op"), message.get("d")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
            elif op == 2:
                if not isinstance(data, dict) or data.get("token") != self.token or self.reject_identify:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                intents = int(data.get("intents") or 0)
                with self._lock:
                    self.sessions += 1
                    session = self.sessions
                    self.identifies.append({"intents": intents})
                    # The oldest scripted message, with any of the bot's own messages queued before it.
                    batch: list[dict[str, Any]] = []
                    while self._script and (not batch or batch[-1]["author"]["id"] == str(BOT_ID)):
                        batch.append(self._script.pop(0))
                await dispatch(
                    "READY",
                    {
                        "v": 10,
                        "user": {**_user(BOT_ID, "agentflow-bot", bot=True), "flags": 0, "verified": True},
                        "guilds": [{"id": str(g.id), "unavailable": True} for g in self.guilds],
                        "session_id": f"session-{session}",
                        "resume_gateway_url": self.gateway_url,
                        "application": {"id": str(APPLICATION_ID), "flags": 0},
                        "private_channels": [],
                        "relationships": [],
                    },
                )
                for guild in self.guilds:
                    await dispatch("GUILD_CREATE", guild.payload())
                for scripted in batch if intents & GUILD_MESSAGES else ():
                    if not intents & MESSAGE_CONTENT:
                        scripted = {**scripted, "content": "", "attachments": []}
                    await dispatch("MESSAGE_CREATE", scripted)
            elif op == 6:
                await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
        return ws
