"""Scrubbing resolved secret values out of text and data before it is logged, raised or output."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

MASK = "***"
# Values shorter than this are not redacted: masking every "abc" or "1" in logs and outputs would
# garble far more than it protects, and a secret that short protects nothing anyway.
MIN_SECRET_LENGTH = 4


class Redactor:
    """Holds the secret values resolved for a run; `redact` replaces each occurrence with `***`.

    Exact occurrences only: a secret that reaches text in another encoding (URL-quoted, base64)
    is not recognised.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()  # nodes of one run may resolve credentials from several threads

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"  # never the values

    def add(self, value: str | SecretStr) -> None:
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.add(secret)
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
