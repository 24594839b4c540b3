"""Per-user credentials, encrypted at rest, in one Postgres table.

    agentflow_credentials(id, user_id, provider, type, title, ciphertext, key_id, created_at)

Only `ciphertext` holds the secret, encrypted with the key ring's newest key (`key_id` names it).
A credential is read back only through `resolve(id, user_id)`, which checks ownership in the same
query, so an id that exists for someone else and an id that does not exist give the same error:
ids cannot be probed. The value leaves this module only as a pydantic SecretStr. No Dagster.
"""

from __future__ import annotations

import builtins
import os
import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg2
from pydantic import SecretStr

from agent_defs.credentials.keys import CredentialsError, InvalidToken, KeyRing
from agent_defs.pgpool import PgPool
from blocks import Credentials

TABLE = "agentflow_credentials"
DATABASE_VAR = "AGENTFLOW_DATABASE_URL"
# The kinds blocks ask for (blocks.CredentialsField.type).
CREDENTIAL_TYPES = ("api_key", "oauth2", "user_password", "host_scoped")

_SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    provider text NOT NULL,
    type text NOT NULL,
    title text NOT NULL DEFAULT '',
    ciphertext bytea NOT NULL,
    key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {TABLE}_user ON {TABLE} (user_id, created_at);
"""


class CredentialAccessError(CredentialsError):
    """No such credential for this user: unknown, or someone else's (deliberately the same error)."""

    def __init__(self, credential_id: str, user_id: str) -> None:
        super().__init__(f"no credential {credential_id!r} for user {user_id!r}")
        self.credential_id = credential_id
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class CredentialsMeta:
    """What may be shown about a credential: everything but the value."""

    id: str
    user_id: str
    provider: str
    type: str
    title: str
    created_at: datetime


def _required(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(f"{what} must be a non-empty string")
    return value


class CredentialsStore:
    def __init__(self, dsn: str, keys: KeyRing, max_idle_connections: int = 4) -> None:
        self._keys = keys
        self._pool = PgPool(
            dsn,
            schema_sql=_SCHEMA_SQL,
            error=CredentialsError,
            what="credentials",
            max_idle_connections=max_idle_connections,
        )

    def __repr__(self) -> str:
        return f"CredentialsStore(table {TABLE}, {self._keys!r})"  # never the DSN nor a key

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> CredentialsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self, user_id: str, provider: str, type: str, secret: str | SecretStr, title: str = ""
    ) -> CredentialsMeta:
        _required(user_id, "user id")
        _required(provider, "provider")
        if type not in CREDENTIAL_TYPES:
            raise CredentialsError(
                f"credential type must be one of {', '.join(CREDENTIAL_TYPES)}; got {type!r}"
            )
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not isinstance(value, str) or not value:
            raise CredentialsError("the secret value is empty")
        ciphertext, key_id = self._keys.encrypt(value)
        credential_id = str(uuid.uuid4())
        with self._pool.transaction() as cur:
            cur.execute(
                f"""INSERT INTO {TABLE} (id, user_id, provider, type, title, ciphertext, key_id)
                    VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING created_at""",
                (credential_id, user_id, provider, type, title or "", psycopg2.Binary(ciphertext), key_id),
            )
            created_at = cur.fetchone()[0]
        return CredentialsMeta(credential_id, user_id, provider, type, title or "", created_at)

    def list(self, user_id: str) -> builtins.list[CredentialsMeta]:
        with self._pool.transaction() as cur:
            cur.execute(
                f"""SELECT id, user_id, provider, type, title, created_at FROM {TABLE}
                    WHERE user_id = %s ORDER BY created_at, id""",
                (user_id,),
            )
            rows = cur.fetchall()
        return [CredentialsMeta(*row) for row in rows]

    def resolve(self, credential_id: str, user_id: str) -> Credentials:
        """The credential with its value, for a block about to run on behalf of `user_id`."""
        with self._pool.transaction() as cur:
            # Ownership is part of the lookup, so someone else's id looks exactly like an unknown one.
            cur.execute(
                f"SELECT provider, type, title, ciphertext FROM {TABLE} WHERE id = %s AND user_id = %s",
                (credential_id, user_id),
            )
            row = cur.fetchone()
        if row is None:
            raise CredentialAccessError(credential_id, user_id)
        provider, type_, title, ciphertext = row
        try:
            value = self._keys.decrypt(bytes(ciphertext))
        except InvalidToken:
            raise CredentialsError(
                f"credential {credential_id!r} of user {user_id!r} cannot be decrypted: the key that "
                "encrypted it is not in the key ring (AGENTFLOW_CREDENTIALS_KEYS)"
            ) from None
        return Credentials(
            id=credential_id,
            provider=provider,
            type=type_,
            secret=SecretStr(value),
            owner_user_id=user_id,
            title=title,
        )

    def delete(self, credential_id: str, user_id: str) -> None:
        with self._pool.transaction() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE id = %s AND user_id = %s", (credential_id, user_id))
            deleted = cur.rowcount
        if not deleted:
            raise CredentialAccessError(credential_id, user_id)

    def rotate(self) -> int:
        """Re-encrypt every row not yet under the newest key; returns how many were re-encrypted.
        All or nothing: if a row cannot be decrypted with any key in the ring, nothing changes."""
        current = self._keys.current_key_id
        with self._pool.transaction() as cur:
            cur.execute(f"SELECT id, ciphertext FROM {TABLE} WHERE key_id <> %s FOR UPDATE", (current,))
            rows = cur.fetchall()
            updates: builtins.list[tuple[bytes, str]] = []
            unreadable: builtins.list[str] = []
            for credential_id, ciphertext in rows:
                try:
                    updates.append((self._keys.reencrypt(bytes(ciphertext)), credential_id))
                except InvalidToken:
                    unreadable.append(credential_id)
            if unreadable:
                raise CredentialsError(
                    f"cannot rotate: {len(unreadable)} credential(s) match no key in the key ring "
                    f"(ids {', '.join(unreadable[:10])}{', ...' if len(unreadable) > 10 else ''}); nothing "
                    "was re-encrypted"
                )
            for token, credential_id in updates:
                cur.execute(
                    f"UPDATE {TABLE} SET ciphertext = %s, key_id = %s WHERE id = %s",
                    (psycopg2.Binary(token), current, credential_id),
                )
        return len(updates)


def credentials_store_from_env() -> CredentialsStore:
    """The store in `AGENTFLOW_DATABASE_URL` with the keys in `AGENTFLOW_CREDENTIALS_KEYS`, read when called."""
    keys = KeyRing.from_env()
    dsn = os.environ.get(DATABASE_VAR, "").strip()
    if not dsn:
        raise CredentialsError(
            f"the credentials store needs {DATABASE_VAR} (a libpq DSN or postgresql:// URL)"
        )
    return CredentialsStore(dsn, keys)
