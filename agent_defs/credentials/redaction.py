"""Scrubbing resolved secret values out of text and data before it is logged, raised or output.

A credential is registered whole *and* by the parts a block may send and a server may echo back
(`credential_parts`): see the README's "What redaction covers".
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

from pydantic import SecretStr

MASK = "***"
# A whole stored secret shorter than this is not redacted: masking every "abc" or "1" in logs and
# outputs would garble far more than it protects, and a secret that short protects nothing anyway.
MIN_SECRET_LENGTH = 4
# A part derived from a secret (a JSON field, the token after "Bearer ", a password) is redacted
# only from this length on: shorter parts ("admin", "true", a port) are ordinary words.
MIN_PART_LENGTH = 6

# "Bearer <token>", "Basic <base64>", "Bot <token>", "token <token>": an auth scheme, then the secret.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)\s+(\S.*)", re.DOTALL)
# JSON keys naming the two halves of a login, in the spellings providers use.
_USER_KEYS = ("username", "user", "login", "email", "client_id")
_PASSWORD_KEYS = ("password", "pass", "passwd", "secret", "client_secret", "api_secret")


def _json_leaves(value: Any) -> Iterable[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _login_pairs(value: Any) -> Iterable[str]:
    """`user:password` for every JSON object holding both halves (what Basic auth encodes)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            user = next((item[k] for k in _USER_KEYS if isinstance(item.get(k), str)), None)
            password = next((item[k] for k in _PASSWORD_KEYS if isinstance(item.get(k), str)), None)
            if user is not None and password:
                yield f"{user}:{password}"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _basic_decoded(token: str) -> str | None:
    try:
        return base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _pieces(text: str) -> Iterable[str]:
    """What a header value or field is made of: the secret after an auth scheme (and, for Basic,
    the decoded `user:password`), the password of a `user:password` pair or of a URL, cookie values."""
    yield text
    scheme = _SCHEME.fullmatch(text.strip())
    if scheme is not None:
        token = scheme.group(2).strip()
        yield token
        if scheme.group(1).lower() == "basic":
            decoded = _basic_decoded(token)
            if decoded is not None:
                yield decoded
                yield from _pieces(decoded)
    if "://" in text:
        try:
            password = urlsplit(text.strip()).password
        except ValueError:
            password = None
        if password:
            yield password
    elif ":" in text and not any(c.isspace() for c in text.strip()):
        yield text.split(":", 1)[1]
    if "=" in text:  # "a=1; b=2" (Cookie), "key=value"
        for item in text.split(";"):
            if "=" in item:
                yield item.split("=", 1)[1].strip()


def _encodings(part: str) -> Iterable[str]:
    """The forms a part takes when a server writes it into a URL, a JSON string or HTML."""
    yield part
    yield quote(part, safe="")
    yield quote_plus(part)
    yield json.dumps(part)[1:-1]
    yield json.dumps(part, ensure_ascii=False)[1:-1]
    yield html.escape(part)


def credential_parts(secret: str) -> set[str]:
    """Every string to redact for one credential value: the value, each string field when it is
    JSON, the token of "<scheme> <token>", the decoded pair of Basic auth and the base64 of every
    `user:password` pair (a raw "user:pass" value or JSON username/password fields), the password
    of a URL or pair, cookie values; each also URL-encoded, JSON-escaped and HTML-escaped. Parts
    shorter than MIN_PART_LENGTH are left out (the whole value counts from MIN_SECRET_LENGTH)."""
    try:
        decoded: Any = json.loads(secret)
    except ValueError:
        decoded = None
    is_json = isinstance(decoded, Mapping | list)
    raw: set[str] = {secret}
    for text in _json_leaves(decoded) if is_json else (secret,):
        raw.update(_pieces(text))
    pairs = list(_login_pairs(decoded)) if is_json else []
    pairs += [t for t in raw if ":" in t and "://" not in t and not any(c.isspace() for c in t)]
    raw.update(pairs)
    raw.update(base64.b64encode(pair.encode()).decode() for pair in pairs)
    parts = {secret} if len(secret) >= MIN_SECRET_LENGTH else set()
    for part in raw:
        if len(part) >= MIN_PART_LENGTH:
            parts.update(form for form in _encodings(part) if len(form) >= MIN_PART_LENGTH)
    return parts


class Redactor:
    """Holds the secret values resolved for a run; `redact` replaces each occurrence with `***`.

    `add` registers one exact value; `add_credential` a credential value and its parts
    (`credential_parts`). Other transformations of a secret (hex, base64 of anything but a login
    pair, a substring, a changed case) are not recognised.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()  # nodes of one run may resolve credentials from several threads

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"  # never the values

    def add(self, value: str | SecretStr) -> None:
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH:
            self._register({secret})

    def add_credential(self, value: str | SecretStr) -> None:
        """Register a credential's value from the value itself, with every part of it a block may
        send (the token without its scheme, each JSON field, a Basic pair...)."""
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(secret, str):
            self._register(credential_parts(secret))

    def _register(self, secrets: set[str]) -> None:
        with self._lock:
            new = secrets - self._secrets
            if not new:
                return
            self._secrets |= new
            # Longest first, so a secret containing another is masked whole, not in pieces.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def redact_obj(self, obj: Any) -> Any:
        """A copy with every string redacted, through dicts (keys and values), lists and tuples;
        other values are returned as they are."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, Mapping):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.redact_obj(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(v) for v in obj)
        return obj
