"""Text blocks: MatchTextPattern, ExtractTextInformation, FillTextTemplate and CombineTexts
(AutoGPT blocks/text.py)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

from pydantic import Field

from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    RunContext,
)
from blocks.templating import render_template as render_template  # llm.py takes it from here
from blocks.templating import render_template_async

# Limits AutoGPT applies to regex extraction.
MAX_TEXT_LENGTH = 1_000_000
MAX_MATCHES = 1000
MAX_MATCH_LENGTH = 10_000


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _regex_flags(case_sensitive: bool, dot_all: bool) -> int:
    return (0 if case_sensitive else re.IGNORECASE) | (re.DOTALL if dot_all else 0)


@lru_cache(maxsize=512)
def _compile_regex(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


class MatchTextPatternBlock(Block):
    id = "3060088f-6ed9-4928-9ba7-9c92823a7ccd"
    repeated_output_pins = frozenset()
    description = (
        "Matches text against a regex pattern and forwards data to positive or negative output "
        "based on the match."
    )
    categories = frozenset({BlockCategory.TEXT})

    class Input(BlockInput):
        text: Any = Field(description="Text to match")
        match: str = Field(description="Pattern (Regex) to match")
        data: Any = Field(description="Data to be forwarded to output")
        case_sensitive: bool = Field(default=True, description="Case sensitive match")
        dot_all: bool = Field(default=True, description="Dot matches all")

    class Output(BlockOutput):
        positive: Any = Field(description="Output data if match is found")
        negative: Any = Field(description="Output data if match is not found")

    self_tests = (
        BlockSelfTest(
            input={"text": "ABC", "match": "ab", "data": "X", "case_sensitive": False},
            output=[("positive", "X")],
        ),
        BlockSelfTest(
            input={"text": "ABC", "match": "ab", "data": "Y", "case_sensitive": True},
            output=[("negative", "Y")],
        ),
        BlockSelfTest(
            input={"text": "Hello World!", "match": ".orld.+", "data": "Z"}, output=[("positive", "Z")]
        ),
        BlockSelfTest(
            input={"text": "Hello World!", "match": "World![a-z]+", "data": "Z"}, output=[("negative", "Z")]
        ),
        BlockSelfTest(
            input={"text": {"a": 1}, "match": '"a": 1', "data": None}, output=[("positive", {"a": 1})]
        ),
        BlockSelfTest(
            input={"text": "x", "match": "(", "data": "Z"},
            output=[("error", lambda e: "invalid regex pattern" in e)],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        output = input.data or input.text
        try:
            pattern = _compile_regex(input.match, _regex_flags(input.case_sensitive, input.dot_all))
        except re.error as exc:
            yield "error", f"invalid regex pattern {input.match!r}: {exc}"
            return
        if pattern.search(_as_text(input.text)):
            yield "positive", output
        else:
            yield "negative", output


class ExtractTextInformationBlock(Block):
    id = "3146e4fe-2cdd-4f29-bd12-0c9d5bb4deb0"
    repeated_output_pins = frozenset({"positive"})
    cacheable = True  # pure (regex over text); cheaper blocks are not worth a Redis round trip
    description = "This block extracts the text from the given text using the pattern (regex)."
    categories = frozenset({BlockCategory.TEXT})

    class Input(BlockInput):
        text: Any = Field(description="Text to parse")
        pattern: str = Field(description="Pattern (Regex) to parse")
        group: int = Field(default=0, description="Group number to extract")
        case_sensitive: bool = Field(default=True, description="Case sensitive match")
        dot_all: bool = Field(default=True, description="Dot matches all")
        find_all: bool = Field(default=False, description="Find all matches")

    class Output(BlockOutput):
        positive: str = Field(description="Extracted text")
        negative: str = Field(description="Original text")
        matched_results: list[str] = Field(description="List of matched results")
        matched_count: int = Field(description="Number of matched results")

    self_tests = (
        BlockSelfTest(
            input={"text": "Hello, World!", "pattern": "Hello, (.+)", "group": 1},
            output=[("positive", "World!"), ("matched_results", ["World!"]), ("matched_count", 1)],
        ),
        BlockSelfTest(
            input={"text": "Hello, World!", "pattern": "Hello, (.+)", "group": 0},
            output=[
                ("positive", "Hello, World!"),
                ("matched_results", ["Hello, World!"]),
                ("matched_count", 1),
            ],
        ),
        BlockSelfTest(
            input={"text": "Hello, World!", "pattern": "Hello, (.+)", "group": 2},
            output=[("negative", "Hello, World!"), ("matched_results", []), ("matched_count", 0)],
        ),
        BlockSelfTest(
            input={"text": "Hello, World!", "pattern": "hello,", "case_sensitive": False},
            output=[("positive", "Hello,"), ("matched_results", ["Hello,"]), ("matched_count", 1)],
        ),
        BlockSelfTest(
            input={"text": "Hello, World!! Hello, Earth!!", "pattern": "Hello, (\\S+)", "group": 1},
            output=[("positive", "World!!"), ("matched_results", ["World!!"]), ("matched_count", 1)],
        ),
        BlockSelfTest(
            input={
                "text": "Hello, World!! Hello, Earth!!",
                "pattern": "Hello, (\\S+)",
                "group": 1,
                "find_all": True,
            },
            output=[
                ("positive", "World!!"),
                ("positive", "Earth!!"),
                ("matched_results", ["World!!", "Earth!!"]),
                ("matched_count", 2),
            ],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        original = _as_text(input.text)
        text = original[:MAX_TEXT_LENGTH]
        group = input.group
        matches: list[str] = []
        try:
            pattern = _compile_regex(input.pattern, _regex_flags(input.case_sensitive, input.dot_all))
            if 0 <= group <= pattern.groups:
                limit = MAX_MATCHES if input.find_all else 1
                for found in pattern.finditer(text):
                    matches.append((found.group(group) or "")[:MAX_MATCH_LENGTH])
                    if len(matches) >= limit:
                        break
        except re.error:
            # AutoGPT treats a bad pattern as "no match" rather than a failure.
            matches = []
        for match in matches:
            yield "positive", match
        if not matches:
            yield "negative", original
        yield "matched_results", matches
        yield "matched_count", len(matches)


class FillTextTemplateBlock(Block):
    id = "db7d8f02-2f44-4c55-ab7a-eae0941f0c30"
    repeated_output_pins = frozenset()
    description = "This block formats the given texts using the format template."
    categories = frozenset({BlockCategory.TEXT})

    class Input(BlockInput):
        values: dict[str, Any] = Field(
            description="Values (dict) to be used in format, e.g. {{value_name}} in the template."
        )
        format: str = Field(description="Template to format the text using `values`. Use Jinja2 syntax.")
        escape_html: bool = Field(
            default=False, description="Whether to HTML-escape the inserted values (for HTML output)."
        )

    class Output(BlockOutput):
        output: str = Field(description="Formatted text")

    self_tests = (
        BlockSelfTest(
            input={
                "values": {"name": "Alice", "hello": "Hello", "world": "World!"},
                "format": "{{hello}}, {{ world }} {{name}}",
            },
            output=[("output", "Hello, World! Alice")],
        ),
        BlockSelfTest(
            input={
                "values": {"list": ["Hello", " World!"]},
                "format": "{% for item in list %}{{ item }}{% endfor %}",
            },
            output=[("output", "Hello World!")],
        ),
        BlockSelfTest(
            input={"values": {}, "format": "{% set name = 'Alice' %}Hello, World! {{ name }}"},
            output=[("output", "Hello, World! Alice")],
        ),
        BlockSelfTest(
            input={"values": {"x": "<b>"}, "format": "{{ x }}", "escape_html": True},
            output=[("output", "&lt;b&gt;")],
        ),
        BlockSelfTest(
            input={"values": {}, "format": "{{ ''.__class__.__mro__ }}"},
            output=[("error", lambda e: "sandbox" in e)],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            text = await render_template_async(input.format, input.values, input.escape_html)
        except ValueError as exc:
            yield "error", str(exc)
            return
        yield "output", text


class CombineTextsBlock(Block):
    id = "e30a4d42-7b7d-4e6a-b36e-1f9b8e3b7d85"
    repeated_output_pins = frozenset()
    description = "This block combines multiple input texts into a single output text."
    categories = frozenset({BlockCategory.TEXT})

    class Input(BlockInput):
        input: list[str] = Field(default_factory=list, description="text input to combine")
        delimiter: str = Field(default="", description="Delimiter to combine texts")
        # The same block id once had four fixed text pins; old exports still link them.
        input1: str = Field(default="", description="Legacy first text input")
        input2: str = Field(default="", description="Legacy second text input")
        input3: str = Field(default="", description="Legacy third text input")
        input4: str = Field(default="", description="Legacy fourth text input")

    class Output(BlockOutput):
        output: str = Field(description="Combined text")

    self_tests = (
        BlockSelfTest(
            input={"input": ["Hello world I like ", "cake and to go for walks"]},
            output=[("output", "Hello world I like cake and to go for walks")],
        ),
        BlockSelfTest(
            input={"input": ["This is a test", "Hi!"], "delimiter": "! "},
            output=[("output", "This is a test! Hi!")],
        ),
        BlockSelfTest(input={"input1": "Ann", "input2": " Said: "}, output=[("output", "Ann Said: ")]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        legacy = [t for t in (input.input1, input.input2, input.input3, input.input4) if t]
        yield "output", input.delimiter.join([*input.input, *legacy])
