"""Per-user credentials encrypted at rest, and redaction of their values. No Dagster."""

from agent_defs.credentials.keys import KEYS_VAR, CredentialsError, KeyRing, KeyRingError
from agent_defs.credentials.redaction import Redactor
from agent_defs.credentials.store import (
    CREDENTIAL_TYPES,
    CredentialAccessError,
    CredentialsMeta,
    CredentialsStore,
    credentials_store_from_env,
)

__all__ = [
    "CREDENTIAL_TYPES",
    "KEYS_VAR",
    "CredentialAccessError",
    "CredentialsError",
    "CredentialsMeta",
    "CredentialsStore",
    "KeyRing",
    "KeyRingError",
    "Redactor",
    "credentials_store_from_env",
]
