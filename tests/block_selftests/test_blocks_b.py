"""Behaviour tests for the branching, text, XML, time and HTTP blocks."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import blocks
from blocks.library.branching import ConditionBlock, IfInputMatchesBlock
from blocks.library.http import OutgoingRequest, SendWebRequestBlock
from blocks.library.text import (
    CombineTextsBlock,
    ExtractTextInformationBlock,
    FillTextTemplateBlock,
    MatchTextPatternBlock,
)
from blocks.library.time_blocks import CountdownTimerBlock, GetCurrentDateAndTimeBlock, GetCurrentDateBlock
from blocks.library.xml_parser import BILLION_LAUGHS, XMLParserBlock
from blocks.outbound import is_blocked_address
from blocks.sdk import Block, BlockSelfTest
from blocks.testing import collect_outputs


def run(
    cls: type[Block],
    inputs: Mapping[str, Any],
    *,
    settings: Mapping[str, Any] | None = None,
    mocks: Mapping[str, Callable[..., Any]] | None = None,
) -> list[tuple[str, Any]]:
    block = blocks.REGISTRY.get(cls.id)
    assert isinstance(block, cls)
    case = BlockSelfTest(input=inputs, output=[], mocks=mocks or {}, settings=settings or {})
    return asyncio.run(collect_outputs(block, case))


# --- branching ----------------------------------------------------------------------------------------


def test_condition_compares_numeric_strings_as_numbers() -> None:
    # As strings "10" < "9"; as numbers 10 > 9.
    assert run(ConditionBlock, {"value1": "10", "operator": ">", "value2": "9"}) == [
        ("result", True),
        ("yes_output", 10.0),
    ]


def test_condition_defaults_yes_to_value1_and_no_to_value2() -> None:
    assert run(ConditionBlock, {"value1": 1, "operator": "==", "value2": 2}) == [
        ("result", False),
        ("no_output", 2),
    ]
    assert run(ConditionBlock, {"value1": "a", "operator": "!=", "value2": "b"}) == [
        ("result", True),
        ("yes_output", "a"),
    ]


def test_condition_explicit_falsy_yes_value_is_kept() -> None:
    assert run(ConditionBlock, {"value1": 3, "operator": "<=", "value2": 3, "yes_value": 0}) == [
        ("result", True),
        ("yes_output", 0),
    ]


def test_condition_strips_non_numeric_strings() -> None:
    assert run(ConditionBlock, {"value1": "  yes ", "operator": "==", "value2": "yes"})[0] == ("result", True)


def test_condition_incomparable_values_give_a_clear_error() -> None:
    [(pin, message)] = run(ConditionBlock, {"value1": "abc", "operator": ">", "value2": 1})
    assert pin == "error"
    assert "cannot compare 'abc'" in message


def test_if_input_matches_routes_none_values() -> None:
    assert run(IfInputMatchesBlock, {"input": None, "value": None, "yes_value": "Y"}) == [
        ("result", True),
        ("yes_output", "Y"),
    ]
    assert run(IfInputMatchesBlock, {"input": 1, "value": "1"}) == [("result", False), ("no_output", None)]


# --- text -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ values.__init__.__globals__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
    ],
)
def test_template_sandbox_refuses_attribute_escapes(template: str) -> None:
    outputs = run(FillTextTemplateBlock, {"values": {"values": {}}, "format": template})
    assert len(outputs) == 1
    pin, message = outputs[0]
    assert pin == "error"
    assert "unsafe" in message


def test_template_does_not_leak_unsafe_attributes() -> None:
    assert run(FillTextTemplateBlock, {"values": {}, "format": "[{{ ''.__class__ }}]"}) == [("output", "[]")]


def test_template_has_no_dangerous_globals_and_caps_work() -> None:
    assert run(FillTextTemplateBlock, {"values": {}, "format": "[{{ lipsum }}{{ cycler }}]"}) == [
        ("output", "[]")
    ]
    for template in ("{{ 2 ** 100000 }}", "{{ 'a' * 100000 }}", "{{ range(100000) | list | length }}"):
        [(pin, message)] = run(FillTextTemplateBlock, {"values": {}, "format": template})
        assert pin == "error"
        assert "too large" in message


def test_template_escape_html_is_off_by_default() -> None:
    values = {"x": "<b>&</b>"}
    assert run(FillTextTemplateBlock, {"values": values, "format": "{{ x }}"}) == [("output", "<b>&</b>")]
    assert run(FillTextTemplateBlock, {"values": values, "format": "{{ x }}", "escape_html": True}) == [
        ("output", "&lt;b&gt;&amp;&lt;/b&gt;")
    ]


def test_template_format_filter_and_syntax_error() -> None:
    assert run(FillTextTemplateBlock, {"values": {"n": "3.14159"}, "format": "{{ n | format('%.2f') }}"}) == [
        ("output", "3.14")
    ]
    [(pin, message)] = run(FillTextTemplateBlock, {"values": {}, "format": "{% if %}"})
    assert pin == "error"
    assert message.startswith("template error")


def test_extract_find_all_yields_each_match_then_the_list() -> None:
    outputs = run(
        ExtractTextInformationBlock,
        {"text": "a=1, b=22, c=333", "pattern": r"(\w)=(\d+)", "group": 2, "find_all": True},
    )
    assert outputs == [
        ("positive", "1"),
        ("positive", "22"),
        ("positive", "333"),
        ("matched_results", ["1", "22", "333"]),
        ("matched_count", 3),
    ]


def test_extract_first_match_only_and_flags() -> None:
    text = "Line ONE\nline two"
    assert run(ExtractTextInformationBlock, {"text": text, "pattern": "line (\\w+)", "group": 1})[0] == (
        "positive",
        "two",
    )
    outputs = run(
        ExtractTextInformationBlock,
        {"text": text, "pattern": "line (\\w+)", "group": 1, "case_sensitive": False},
    )
    assert outputs == [("positive", "ONE"), ("matched_results", ["ONE"]), ("matched_count", 1)]
    outputs = run(ExtractTextInformationBlock, {"text": text, "pattern": "ONE.line", "dot_all": False})
    assert outputs[0] == ("negative", text)


def test_extract_bad_pattern_and_non_string_text() -> None:
    assert run(ExtractTextInformationBlock, {"text": "abc", "pattern": "(["}) == [
        ("negative", "abc"),
        ("matched_results", []),
        ("matched_count", 0),
    ]
    outputs = run(ExtractTextInformationBlock, {"text": {"k": 42}, "pattern": r'"k": (\d+)', "group": 1})
    assert outputs[0] == ("positive", "42")


def test_match_text_pattern_forwards_text_when_data_is_empty() -> None:
    assert run(
        MatchTextPatternBlock, {"text": "Hello", "match": "^h", "data": "", "case_sensitive": False}
    ) == [("positive", "Hello")]


def test_combine_texts_current_and_legacy_pins() -> None:
    assert run(CombineTextsBlock, {"input": ["a", "b"], "delimiter": "-"}) == [("output", "a-b")]
    assert run(CombineTextsBlock, {"input1": "x", "input2": "", "input3": "z"}) == [("output", "xz")]


# --- XML ------------------------------------------------------------------------------------------------


def test_xml_bomb_is_refused() -> None:
    [(pin, message)] = run(XMLParserBlock, {"input_xml": BILLION_LAUGHS})
    assert pin == "error"
    assert "XML refused" in message
    assert "DTD" in message


def test_xml_external_entity_is_refused() -> None:
    xxe = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    [(pin, message)] = run(XMLParserBlock, {"input_xml": xxe})
    assert pin == "error"
    assert "XML refused" in message


def test_xml_converts_like_gravitasml() -> None:
    xml = """
        <Result>
          <title> Hi </title>
          <items><item>1</item><item>2</item></items>
          <!-- a comment -->
          <empty/>
        </Result>
    """
    assert run(XMLParserBlock, {"input_xml": xml}) == [
        (
            "parsed_xml",
            {"result": {"title": "Hi", "items": [{"item": "1"}, {"item": "2"}], "empty": ""}},
        )
    ]


def test_xml_syntax_errors_are_reported() -> None:
    # Distinct top-level elements merge, as in gravitasml; repeated ones cannot form one dict.
    for bad in ("", "<a><b></a>", "text <a/>", "<a/><a/>"):
        [(pin, message)] = run(XMLParserBlock, {"input_xml": bad})
        assert pin == "error", bad
        assert message


# --- time -----------------------------------------------------------------------------------------------


def test_current_date_offset_is_subtracted_like_autogpt() -> None:
    [(pin, value)] = run(
        GetCurrentDateBlock,
        {"trigger": "go", "offset": "-1", "format_type": {"discriminator": "iso8601"}},
    )
    assert pin == "date"
    delta = datetime.fromisoformat(value).date() - datetime.now(UTC).date()
    assert delta.days in (1, 2)  # tomorrow (allowing for midnight between the two clocks)


def test_current_date_accepts_legacy_flat_format_and_plain_string() -> None:
    year = str(datetime.now(UTC).year)
    assert run(GetCurrentDateBlock, {"trigger": "go", "format": "%Y"}) == [("date", year)]
    assert run(GetCurrentDateBlock, {"trigger": "go", "format_type": "%Y"}) == [("date", year)]
    assert run(
        GetCurrentDateBlock, {"trigger": "go", "format_type": {"format": "%Y", "timezone": "UTC"}}
    ) == [("date", year)]


def test_date_time_uses_user_timezone_only_when_asked() -> None:
    fmt = {"discriminator": "iso8601", "timezone": "UTC", "use_user_timezone": True}
    [(_, value)] = run(
        GetCurrentDateAndTimeBlock,
        {"trigger": "x", "format_type": fmt},
        settings={"user_timezone": "Asia/Kolkata"},
    )
    assert value.endswith("+05:30")
    [(_, value)] = run(GetCurrentDateAndTimeBlock, {"trigger": "x", "format_type": fmt})
    assert value.endswith("+00:00")


def test_countdown_sleeps_the_total_once_per_repeat() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    outputs = run(
        CountdownTimerBlock,
        {"input_message": {"m": 1}, "seconds": "5", "minutes": "1", "hours": 1, "days": 0, "repeat": 3},
        mocks={"_sleep": fake_sleep},
    )
    assert outputs == [("output_message", {"m": 1})] * 3
    assert slept == [3665, 3665, 3665]


def test_countdown_does_not_block_the_event_loop() -> None:
    block = blocks.REGISTRY.get(CountdownTimerBlock.id)
    assert block is not None

    async def scenario() -> list[str]:
        events: list[str] = []

        async def timer() -> None:
            data = CountdownTimerBlock.Input(seconds=1)
            async for _ in block.run(data, blocks.RunContext()):
                events.append("timer")

        async def other() -> None:
            await asyncio.sleep(0.05)
            events.append("other")

        await asyncio.gather(timer(), other())
        return events

    assert asyncio.run(scenario()) == ["other", "timer"]


# --- HTTP -----------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/text":
            self._reply(200, "plain body", "text/plain")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/text")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/missing":
            self._reply(404, {"error": "not found"})
        else:
            self._reply(500, {"error": "boom"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        self._reply(200, {"method": "POST", "body": body, "x": self.headers.get("X-Test")})


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


ALLOW = {"allow_private_addresses": True}


def test_http_loopback_is_refused_by_default(local_server: str) -> None:
    [(pin, message)] = run(SendWebRequestBlock, {"url": f"{local_server}/text", "method": "GET"})
    assert pin == "error"
    assert "'127.0.0.1'" in message
    assert "allow_private_addresses" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:1/",
        "http://[::1]:1/",
        "http://[::ffff:127.0.0.1]:1/",
        "http://0.0.0.0:1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.1/",
        "10.0.0.1",
    ],
)
def test_http_private_link_local_and_loopback_hosts_are_refused(url: str) -> None:
    [(pin, message)] = run(SendWebRequestBlock, {"url": url, "method": "GET"})
    assert pin == "error"
    assert message.startswith("refusing to request host")


def test_is_blocked_address_allows_public_addresses() -> None:
    import ipaddress

    assert not is_blocked_address(ipaddress.ip_address("93.184.215.14"))
    assert not is_blocked_address(ipaddress.ip_address("2606:4700::1111"))
    assert is_blocked_address(ipaddress.ip_address("fe80::1"))
    assert is_blocked_address(ipaddress.ip_address("100.64.0.1"))


def test_http_every_resolved_address_is_checked() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "127.0.0.1"]

    [(pin, message)] = run(
        SendWebRequestBlock, {"url": "https://mixed.example/", "method": "GET"}, mocks={"_resolve": resolve}
    )
    assert pin == "error"
    assert "'mixed.example'" in message
    assert "127.0.0.1" in message


def test_http_redirect_to_private_address_is_refused() -> None:
    addresses = {"public.example": "93.184.215.14", "internal.example": "10.0.0.7"}
    sent: list[OutgoingRequest] = []

    async def resolve(host: str, port: int) -> list[str]:
        return [addresses[host]]

    async def send(out: OutgoingRequest) -> httpx.Response:
        sent.append(out)
        return httpx.Response(302, headers={"Location": "http://internal.example/admin"})

    [(pin, message)] = run(
        SendWebRequestBlock,
        {"url": "http://public.example/", "method": "GET"},
        mocks={"_resolve": resolve, "_send": send},
    )
    assert pin == "error"
    assert "'internal.example'" in message
    assert len(sent) == 1


def test_http_allowed_local_request(local_server: str) -> None:
    outputs = run(
        SendWebRequestBlock,
        {
            "url": f"{local_server}/echo",
            "method": "POST",
            "body": {"a": [1, 2]},
            "headers": {"X-Test": "yes"},
        },
        settings=ALLOW,
    )
    assert outputs == [("response", {"method": "POST", "body": {"a": [1, 2]}, "x": "yes"})]


def test_http_local_status_buckets_and_redirects(local_server: str) -> None:
    get = {"method": "GET"}
    assert run(SendWebRequestBlock, {**get, "url": f"{local_server}/text"}, settings=ALLOW) == [
        ("response", "plain body")
    ]
    assert run(SendWebRequestBlock, {**get, "url": f"{local_server}/redirect"}, settings=ALLOW) == [
        ("response", "plain body")
    ]
    assert run(SendWebRequestBlock, {**get, "url": f"{local_server}/missing"}, settings=ALLOW) == [
        ("client_error", {"error": "not found"})
    ]
    assert run(SendWebRequestBlock, {**get, "url": f"{local_server}/fail"}, settings=ALLOW) == [
        ("server_error", {"error": "boom"})
    ]


def test_http_connection_failure_is_an_error_output() -> None:
    [(pin, message)] = run(
        SendWebRequestBlock, {"url": "http://127.0.0.1:1/", "method": "GET"}, settings=ALLOW
    )
    assert pin == "error"
    assert "ConnectError" in message
