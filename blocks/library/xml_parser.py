"""XMLParserBlock (AutoGPT blocks/xml_parser.py): XML text to a dict, safely.

AutoGPT tokenizes with gravitasml; here the document is parsed with defusedxml (DTDs, entity
declarations and external references refused) and converted to the same dict shape:
a leaf becomes {tag: stripped text}; an element with one child or uniquely named children becomes
{tag: {child: ...}}; repeated child names become {tag: [{child: ...}, ...]}. Tag names are
lowercased as gravitasml does. Like gravitasml, a document may hold several top-level elements with
distinct names (an LLM's "<title>...</title> <body>...</body>"): they merge into one dict; text outside
every element is refused.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring
from pydantic import Field

from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    RunContext,
)

MAX_XML_SIZE = 10 * 1024 * 1024  # AutoGPT's limit, in characters

# A bare "&" that starts no entity or character reference (common in LLM output) is taken literally.
_BARE_AMPERSAND = re.compile(r"&(?!(?:[A-Za-z_][\w.-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<lolz>&lol3;</lolz>"
)


def _tag(element: Element) -> str:
    tag = element.tag
    if tag.startswith("{"):  # "{namespace}local" -> "local"
        tag = tag.rpartition("}")[2]
    return tag.lower()


def _to_dict(element: Element) -> dict[str, Any]:
    children = list(element)
    tag = _tag(element)
    if not children:
        return {tag: (element.text or "").strip()}
    converted = [_to_dict(child) for child in children]
    if len(converted) == 1:
        return {tag: converted[0]}
    names = [_tag(child) for child in children]
    if len(set(names)) == len(names):
        merged: dict[str, Any] = {}
        for item in converted:
            merged.update(item)
        return {tag: merged}
    return {tag: converted}


def _top_level_dict(wrapper: Element, first_error: ParseError) -> dict[str, Any]:
    """gravitasml's document level: several top-level elements merge into one dict."""
    stray = [wrapper.text or ""] + [child.tail or "" for child in wrapper]
    if any(part.strip() for part in stray):
        raise ValueError(f"Error in input xml syntax: text outside of a tag is unsupported ({first_error})")
    names = [_tag(child) for child in wrapper]
    if len(set(names)) != len(names):
        raise ValueError(
            f"Error in input xml syntax: repeated top-level elements {sorted(names)} cannot form one dict "
            "(wrap them in a single element)"
        )
    merged: dict[str, Any] = {}
    for child in wrapper:
        merged.update(_to_dict(child))
    return merged


def parse_xml(text: str) -> dict[str, Any]:
    """Parse `text` into AutoGPT's dict shape; raises ValueError with a clear message."""
    if len(text) > MAX_XML_SIZE:
        raise ValueError(f"XML too large: {len(text)} characters > {MAX_XML_SIZE}")
    if not text.strip():
        raise ValueError("XML input is empty.")
    escaped = _BARE_AMPERSAND.sub("&amp;", text)
    try:
        try:
            return _to_dict(fromstring(escaped, forbid_dtd=True))
        except ParseError as exc:
            if "junk after document element" not in str(exc):
                raise
            return _top_level_dict(fromstring(f"<_top>{escaped}</_top>", forbid_dtd=True), exc)
    except DTDForbidden as exc:
        raise ValueError(
            "XML refused: document type declarations (DTDs) are not allowed, so entity expansion "
            f"(e.g. 'billion laughs') and external entities cannot be used ({exc})"
        ) from exc
    except EntitiesForbidden as exc:
        raise ValueError(f"XML refused: entity declarations are not allowed ({exc})") from exc
    except ExternalReferenceForbidden as exc:
        raise ValueError(f"XML refused: external references are not allowed ({exc})") from exc
    except DefusedXmlException as exc:
        raise ValueError(f"XML refused: {exc}") from exc
    except ParseError as exc:
        raise ValueError(f"Error in input xml syntax: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("XML is nested too deeply to convert") from exc


class XMLParserBlock(Block):
    id = "286380af-9529-4b55-8be0-1d7c854abdb5"
    repeated_output_pins = frozenset()
    cacheable = True  # pure: the same XML parses to the same dict
    description = "Parses XML and converts it to a dict"
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        input_xml: str = Field(description="input xml to be parsed")

    class Output(BlockOutput):
        parsed_xml: dict[str, Any] = Field(description="output parsed xml to dict")

    self_tests = (
        BlockSelfTest(
            input={"input_xml": "<tag1><tag2>content</tag2></tag1>"},
            output=[("parsed_xml", {"tag1": {"tag2": "content"}})],
        ),
        BlockSelfTest(
            input={"input_xml": "<Tag><a> x & y </a><a>z</a></Tag>"},
            output=[("parsed_xml", {"tag": [{"a": "x & y"}, {"a": "z"}]})],
        ),
        BlockSelfTest(
            input={"input_xml": BILLION_LAUGHS},
            output=[("error", lambda e: e.startswith("XML refused") and "DTD" in e)],
        ),
        BlockSelfTest(  # gravitasml merges distinct top-level elements
            input={"input_xml": "<Title>\n T \n</Title>\n\n<body>B</body>"},
            output=[("parsed_xml", {"title": "T", "body": "B"})],
        ),
        BlockSelfTest(
            input={"input_xml": "<a>1</a> stray <b>2</b>"},
            output=[("error", lambda e: "syntax" in e and "outside of a tag" in e)],
        ),
        BlockSelfTest(
            input={"input_xml": "<a>1</a><a>2</a>"},
            output=[("error", lambda e: "syntax" in e and "repeated top-level" in e)],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            parsed = parse_xml(input.input_xml)
        except ValueError as exc:
            yield "error", str(exc)
            return
        yield "parsed_xml", parsed
