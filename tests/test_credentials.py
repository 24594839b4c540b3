"""Credentials encrypted at rest, on the real PostgreSQL at 127.0.0.1:5432 (database `test`), in a
fresh schema for this module chosen through the DSN's search_path and dropped afterwards; and the
Redactor."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg2
import pytest
from pydantic import SecretStr

from agent_defs.credentials import (
    KEYS_VAR,
    CredentialAccessError,
    CredentialsError,
    CredentialsStore,
    KeyRing,
    KeyRingError,
    Redactor,
    credentials_store_from_env,
)
from agent_defs.credentials.store import TABLE
from agent_defs.paths import project_root
from blocks import Credentials

ROOT = project_root()
AGENTFLOW = Path(sys.executable).parent / "agentflow"


@pytest.fixture
def own_dsn(fresh_pg_schema: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    """A schema of its own, for a test that must see only its own rows (rotation touches every row)."""
    with fresh_pg_schema() as dsn:
        yield dsn


@pytest.fixture(scope="module")
def key() -> str:
    return KeyRing.generate_key()


@pytest.fixture
def store(pg_dsn: str, key: str) -> Iterator[CredentialsStore]:
    with CredentialsStore(pg_dsn, KeyRing([key])) as store:
        yield store


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"  # the schema is shared by the module's tests


def new_secret() -> str:
    return f"sk-test-{uuid.uuid4().hex}"


def stored_row(dsn: str, credential_id: str) -> tuple[bytes, str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT ciphertext, key_id FROM {TABLE} WHERE id = %s", (credential_id,))
        ciphertext, key_id = cur.fetchone()
    conn.close()
    return bytes(ciphertext), key_id


def test_add_list_resolve_round_trip(store: CredentialsStore) -> None:
    user, secret = new_user(), new_secret()
    meta = store.add(user, "openai", "api_key", secret, "my OpenAI key")
    assert (meta.user_id, meta.provider, meta.type, meta.title) == (
        user,
        "openai",
        "api_key",
        "my OpenAI key",
    )
    assert uuid.UUID(meta.id).version == 4
    assert secret not in repr(meta)
    second = store.add(user, "github", "api_key", SecretStr(new_secret()), "gh")
    assert [m.id for m in store.list(user)] == [meta.id, second.id]
    assert store.list(new_user()) == []

    creds = store.resolve(meta.id, user)
    assert isinstance(creds, Credentials)
    assert isinstance(creds.secret, SecretStr)
    assert creds.secret.get_secret_value() == secret
    assert (creds.id, creds.provider, creds.type, creds.owner_user_id, creds.title) == (
        meta.id,
        "openai",
        "api_key",
        user,
        "my OpenAI key",
    )
    assert secret not in repr(creds)

    store.delete(meta.id, user)
    assert [m.id for m in store.list(user)] == [second.id]
    with pytest.raises(CredentialAccessError):
        store.resolve(meta.id, user)


def test_bad_inputs_are_clear_errors(store: CredentialsStore) -> None:
    with pytest.raises(CredentialsError, match="credential type must be one of"):
        store.add(new_user(), "openai", "password", new_secret(), "t")
    with pytest.raises(CredentialsError, match="secret value is empty"):
        store.add(new_user(), "openai", "api_key", "", "t")
    with pytest.raises(CredentialsError, match="provider"):
        store.add(new_user(), " ", "api_key", new_secret(), "t")


def test_ciphertext_does_not_contain_the_secret(store: CredentialsStore, pg_dsn: str, key: str) -> None:
    secret = new_secret()
    meta = store.add(new_user(), "openai", "api_key", secret, "t")
    ciphertext, key_id = stored_row(pg_dsn, meta.id)
    assert secret.encode() not in ciphertext
    assert secret.encode().hex().encode() not in ciphertext
    assert key_id == KeyRing([key]).current_key_id
    assert key not in key_id and key.encode() not in ciphertext


def test_another_user_cannot_resolve_and_learns_nothing(store: CredentialsStore) -> None:
    alice, bob, secret = new_user(), new_user(), new_secret()
    meta = store.add(alice, "openai", "api_key", secret, "alice's key")
    with pytest.raises(CredentialAccessError) as foreign:
        store.resolve(meta.id, bob)
    text = str(foreign.value)
    assert meta.id in text and bob in text
    assert secret not in text and alice not in text
    assert secret not in repr(foreign.value) and alice not in repr(foreign.value.args)

    # An unknown id gives the same kind of error with the same wording: ids cannot be probed.
    unknown = str(uuid.uuid4())
    with pytest.raises(CredentialAccessError) as missing:
        store.resolve(unknown, bob)
    assert str(missing.value) == text.replace(meta.id, unknown)
    assert str(missing.value) == f"no credential {unknown!r} for user {bob!r}"

    with pytest.raises(CredentialAccessError):
        store.delete(meta.id, bob)
    assert store.resolve(meta.id, alice).secret.get_secret_value() == secret


def test_key_rotation(own_dsn: str) -> None:
    old, new = KeyRing.generate_key(), KeyRing.generate_key()
    user, secret = new_user(), new_secret()
    with CredentialsStore(own_dsn, KeyRing([old])) as store:
        meta = store.add(user, "openai", "api_key", secret, "t")
        assert stored_row(own_dsn, meta.id)[1] == KeyRing([old]).current_key_id

    with CredentialsStore(own_dsn, KeyRing([new])) as store:  # the new key alone cannot read it yet
        with pytest.raises(CredentialsError, match="cannot be decrypted") as caught:
            store.resolve(meta.id, user)
        assert secret not in str(caught.value)
        with pytest.raises(CredentialsError, match="cannot rotate"):
            store.rotate()

    with CredentialsStore(own_dsn, KeyRing([new, old])) as store:
        assert store.resolve(meta.id, user).secret.get_secret_value() == secret
        before = stored_row(own_dsn, meta.id)[0]
        assert store.rotate() == 1
        assert store.rotate() == 0  # everything is already under the newest key
        ciphertext, key_id = stored_row(own_dsn, meta.id)
        assert key_id == KeyRing([new]).current_key_id and ciphertext != before

    with CredentialsStore(own_dsn, KeyRing([new])) as store:
        assert store.resolve(meta.id, user).secret.get_secret_value() == secret


def test_key_ring_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = KeyRing.generate_key(), KeyRing.generate_key()
    monkeypatch.setenv(KEYS_VAR, f" {first} , {second} ")
    ring = KeyRing.from_env()
    assert ring.key_ids == (KeyRing([first]).current_key_id, KeyRing([second]).current_key_id)
    assert first not in repr(ring) and second not in repr(ring)

    monkeypatch.delenv(KEYS_VAR)
    with pytest.raises(KeyRingError, match=f"{KEYS_VAR} is not set"):
        KeyRing.from_env()
    with pytest.raises(KeyRingError, match=f"{KEYS_VAR} is not set"):
        credentials_store_from_env()

    malformed = "not-a-fernet-key-but-a-secret-looking-string"
    monkeypatch.setenv(KEYS_VAR, f"{first},{malformed}")
    with pytest.raises(KeyRingError, match=f"{KEYS_VAR}: key 2 of 2 is not a Fernet key") as caught:
        KeyRing.from_env()
    assert malformed not in str(caught.value) and first not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- the Redactor ------------------------------------------------------------------------------------


def test_redactor() -> None:
    redactor = Redactor()
    assert redactor.redact("nothing to hide") == "nothing to hide"
    redactor.add("sk-abcdef")
    redactor.add(SecretStr("sk-abcdef-longer"))
    redactor.add("abc")  # shorter than 4 characters: ignored
    assert redactor.redact("key sk-abcdef-longer and sk-abcdef, twice sk-abcdef; abc") == (
        "key *** and ***, twice ***; abc"
    )
    assert redactor.redact("regex chars (a+b)") == "regex chars (a+b)"
    redactor.add("(a+b)")
    assert redactor.redact("regex chars (a+b)") == "regex chars ***"
    data = {
        "error": "401 for sk-abcdef",
        "sk-abcdef": ["x", ("sk-abcdef-longer", 3)],
        "n": 5,
        "none": None,
    }
    assert redactor.redact_obj(data) == {
        "error": "401 for ***",
        "***": ["x", ("***", 3)],
        "n": 5,
        "none": None,
    }
    assert data["error"] == "401 for sk-abcdef"  # a copy: the input is left as it was
    assert "sk-" not in repr(redactor)


def test_a_credential_is_redacted_by_its_parts_and_their_encodings() -> None:
    redactor = Redactor()
    headers = {"Authorization": "Bearer tok/en+value=", "X-Api-Key": 'k"ey\\one', "Retries": "3"}
    redactor.add_credential(SecretStr(json.dumps(headers)))
    redactor.add_credential(json.dumps({"username": "robot", "password": "hunter22"}))
    redactor.add_credential("operator:s3cret-pw")
    echoed = [
        "tok/en+value=",  # the token without its scheme
        "tok%2Fen%2Bvalue%3D",  # URL-encoded
        'k"ey\\one',  # a JSON field
        '{"k": "k\\"ey\\\\one"}',  # ...JSON-escaped inside a JSON text
        "k&quot;ey\\one",  # ...HTML-escaped
        base64.b64encode(b"robot:hunter22").decode(),  # Basic auth of a JSON login
        "hunter22",
        base64.b64encode(b"operator:s3cret-pw").decode(),  # Basic auth of a "user:password" value
        "s3cret-pw",
    ]
    for text in echoed:
        assert redactor.redact(f"<{text}>") in ("<***>", '<{"k": "***"}>'), text
    # Parts shorter than 6 characters are ordinary words: "3" and the login "robot" stay.
    assert redactor.redact("robot retried 3 times") == "robot retried 3 times"


# --- the CLI -----------------------------------------------------------------------------------------


def agentflow(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")} | env
    proc = subprocess.run(
        [str(AGENTFLOW), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=120,
        input=stdin if stdin is not None else "",
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_cli_add_and_list_never_show_the_secret(pg_dsn: str, key: str) -> None:
    env = {"AGENTFLOW_DATABASE_URL": pg_dsn, KEYS_VAR: key}
    user, secret, env_secret = new_user(), new_secret(), new_secret()
    outputs: list[str] = []

    added = agentflow(
        "credentials", "add", user, "openai", "--title", "planted", env=env, stdin=secret + "\n"
    )
    outputs.append(added.stdout + added.stderr)
    assert added.returncode == 0, added.stderr
    credential_id = added.stdout.strip()
    assert uuid.UUID(credential_id).version == 4

    from_env = agentflow(
        "credentials",
        "add",
        user,
        "github",
        "--title",
        "from env",
        "--type",
        "api_key",
        "--secret-env",
        "MY_TOKEN",
        env=env | {"MY_TOKEN": env_secret},
    )
    outputs.append(from_env.stdout + from_env.stderr)
    assert from_env.returncode == 0, from_env.stderr

    listed = agentflow("credentials", "list", user, env=env)
    outputs.append(listed.stdout + listed.stderr)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{credential_id}  openai  api_key  'planted'  ")
    assert lines[1].split()[1:4] == ["github", "api_key", "'from"]

    # The trailing newline from the pipe is not part of the stored value.
    with CredentialsStore(pg_dsn, KeyRing([key])) as store:
        assert store.resolve(credential_id, user).secret.get_secret_value() == secret
        assert store.resolve(from_env.stdout.strip(), user).secret.get_secret_value() == env_secret

    failed = [
        agentflow("credentials", "add", user, "openai", "--title", "t", env=env, stdin=""),
        agentflow("credentials", "add", user, "openai", "--title", "t", "--secret-env", "UNSET_VAR", env=env),
        agentflow(
            "credentials", "add", user, "openai", "--title", "t", "--type", "bad", env=env, stdin=secret
        ),
        agentflow("credentials", "delete", new_user(), credential_id, env=env),
    ]
    for proc in failed:
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "stdin was empty" in failed[0].stderr
    assert "UNSET_VAR" in failed[1].stderr
    assert "credential type must be one of" in failed[2].stderr
    assert f"no credential {credential_id!r}" in failed[3].stderr

    for output in outputs:
        assert secret not in output and env_secret not in output and key not in output


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENTFLOW_DATABASE_URL": "host=127.0.0.1"}, f"{KEYS_VAR} is not set"),
        ({"AGENTFLOW_DATABASE_URL": "host=127.0.0.1", KEYS_VAR: "c2VjcmV0LXZhbHVl"}, "is not a Fernet key"),
        ({KEYS_VAR: KeyRing.generate_key()}, "AGENTFLOW_DATABASE_URL"),
    ],
)
def test_cli_configuration_errors_exit_1(env: dict[str, str], message: str) -> None:
    for args in (("credentials", "list", "u"), ("credentials", "add", "u", "p", "--title", "t")):
        proc = agentflow(*args, env=env, stdin="sk-something-secret")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert "c2VjcmV0LXZhbHVl" not in proc.stderr and "sk-something-secret" not in proc.stderr


def test_cli_database_down_exits_1() -> None:
    env = {
        "AGENTFLOW_DATABASE_URL": "host=127.0.0.1 port=1 dbname=test connect_timeout=3",
        KEYS_VAR: KeyRing.generate_key(),
    }
    proc = agentflow("credentials", "list", "u", env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: credentials database unreachable"), proc.stderr
