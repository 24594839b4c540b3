"""The encryption keys of stored credentials: Fernet keys, newest first, from AGENTFLOW_CREDENTIALS_KEYS.

New values are encrypted with the newest key; any key in the ring decrypts (MultiFernet), so a key
is rotated by putting a new one in front, running `CredentialsStore.rotate()`, then dropping the old
one. Nothing here ever prints, logs or echoes a key: errors name the variable and the key's position.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEYS_VAR = "AGENTFLOW_CREDENTIALS_KEYS"

_KEY_HELP = (
    "a Fernet key is 44 characters of url-safe base64 (32 bytes); make one with "
    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
)


class CredentialsError(Exception):
    """A credentials error a user can act on. Its text never holds a secret value or a key."""


class KeyRingError(CredentialsError):
    """The key ring is missing or malformed."""


def key_id_of(key: bytes) -> str:
    """A short public name for a key (a truncated SHA-256 of its 32 random bytes): it tells which
    key encrypted a row, and reveals nothing usable about the key."""
    raw = base64.urlsafe_b64decode(key)
    return hashlib.sha256(b"agentflow-credentials-key:" + raw).hexdigest()[:16]


class KeyRing:
    def __init__(self, keys: Sequence[str | bytes], source: str = "the credentials key ring") -> None:
        if not keys:
            raise KeyRingError(f"{source} holds no keys; {_KEY_HELP}")
        fernets: list[Fernet] = []
        ids: list[str] = []
        for position, key in enumerate(keys, 1):
            raw = (key.encode("ascii", "replace") if isinstance(key, str) else bytes(key)).strip()
            try:
                fernets.append(Fernet(raw))
            except (ValueError, TypeError):
                # `from None`: the original exception must not carry the malformed key anywhere.
                raise KeyRingError(
                    f"{source}: key {position} of {len(keys)} is not a Fernet key; {_KEY_HELP}"
                ) from None
            ids.append(key_id_of(raw))
        self._fernet = MultiFernet(fernets)
        self._ids = tuple(ids)

    @classmethod
    def from_env(cls) -> KeyRing:
        """`AGENTFLOW_CREDENTIALS_KEYS`: comma-separated Fernet keys, newest first; read when called."""
        value = os.environ.get(KEYS_VAR, "")
        keys = [part.strip() for part in value.split(",") if part.strip()]
        if not keys:
            raise KeyRingError(
                f"{KEYS_VAR} is not set: it must hold comma-separated Fernet keys, newest first; {_KEY_HELP}"
            )
        return cls(keys, source=KEYS_VAR)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    def __repr__(self) -> str:
        return f"KeyRing({len(self._ids)} keys, current {self.current_key_id})"  # never the keys

    @property
    def current_key_id(self) -> str:
        return self._ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self._ids

    def encrypt(self, plaintext: str) -> tuple[bytes, str]:
        """(token, id of the key that made it): always the newest key."""
        return self._fernet.encrypt(plaintext.encode("utf-8")), self.current_key_id

    def decrypt(self, token: bytes) -> str:
        """The plaintext; raises cryptography's InvalidToken when no key in the ring fits."""
        return self._fernet.decrypt(token).decode("utf-8")

    def reencrypt(self, token: bytes) -> bytes:
        """The same plaintext under the newest key (keeps the token's original timestamp)."""
        return self._fernet.rotate(token)


__all__ = ["KEYS_VAR", "CredentialsError", "InvalidToken", "KeyRing", "KeyRingError", "key_id_of"]
