"""Airtable blocks (AutoGPT blocks/airtable/bases.py, records.py, _api.py) on Airtable's REST API.

- AirtableCreateBaseBlock: with `find_existing` (the default) GET `<base>/v0/meta/bases` first; a base of
  the same name is returned (was_created False) with its tables from GET `<base>/v0/meta/bases/<id>/tables`
  (none if that fails). Otherwise POST `<base>/v0/meta/bases` {name, workspaceId, tables}.
- AirtableCreateRecordsBlock: POST `<base>/v0/<baseId>/<table>` {records: [{fields}], typecast?,
  returnFieldsByFieldId?} (1 to 10 records, as AutoGPT asserts). Unless `skip_normalization`, the table's
  schema (GET `<base>/v0/meta/bases/<baseId>/tables`) fills each returned record's missing fields with
  their type's empty value, since Airtable omits empty fields.

As AutoGPT's _api does, every request body has the strings "true"/"false" (any case) turned into booleans.
Header `Authorization: Bearer <token>`; the node's `airtable` credential holds a personal access token, or
JSON `{"api_key" or "access_token", "base_url"}`. Endpoint: blocks/provider_http.py (credential JSON,
AGENTFLOW_AIRTABLE_BASE_URL, https://api.airtable.com); every request is address-checked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from blocks.provider_http import (
    TRANSPORT_FAILURES,
    ProviderCalls,
    ProviderEndpoint,
    ProviderError,
    RequestRefused,
    answer_detail,
    mock_credentials,
    mock_wire,
    private_address_self_test,
    resolve_endpoint,
)
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    CredentialsField,
    RetryPolicy,
    RunContext,
)

DEFAULT_BASE_URL = "https://api.airtable.com"
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
MAX_RECORDS_PER_REQUEST = 10

DEFAULT_TABLES: list[dict[str, Any]] = [
    {
        "description": "Default table",
        "name": "Default table",
        "fields": [
            {
                "name": "ID",
                "type": "number",
                "description": "Auto-incrementing ID field",
                "options": {"precision": 0},
            }
        ],
    }
]

TEST_CREDENTIALS = mock_credentials(
    "a1b7ab1e-0000-4000-8000-0000000000a1",
    "airtable",
    "Mock Airtable token",
    {"api_key": "patMOCKairtable.token", "base_url": DEFAULT_BASE_URL},
)

# Field types whose empty value is not None (AutoGPT's get_empty_value_for_field).
_LIST_TYPES = frozenset(
    {
        "multipleSelects",
        "multipleRecordLinks",
        "multipleAttachments",
        "multipleLookupValues",
        "multipleCollaborators",
    }
)
_NUMBER_TYPES = frozenset({"number", "percent", "currency", "rating", "duration", "count", "autoNumber"})
_TEXT_TYPES = frozenset(
    {"singleLineText", "multilineText", "email", "url", "phoneNumber", "richText", "barcode"}
)


def empty_value(field_type: str) -> Any:
    """The value AutoGPT gives a field Airtable left out (dates, selects, formulas...: None)."""
    if field_type == "checkbox":
        return False
    if field_type in _LIST_TYPES:
        return []
    if field_type in _NUMBER_TYPES:
        return 0
    return "" if field_type in _TEXT_TYPES else None


def convert_bools(value: Any) -> Any:
    """AutoGPT's _convert_bools: "true"/"false" strings anywhere in a request body become booleans."""
    if isinstance(value, str):
        lowered = value.lower()
        return True if lowered == "true" else False if lowered == "false" else value
    if isinstance(value, list):
        return [convert_bools(item) for item in value]
    if isinstance(value, dict):
        return {k: convert_bools(v) for k, v in value.items()}
    return value


def normalize_records(records: list[dict[str, Any]], table: dict[str, Any]) -> list[dict[str, Any]]:
    """Every schema field in every record (AutoGPT's normalize_records without field metadata)."""
    fields = table.get("fields") or []
    normalized = []
    for record in records:
        present = record.get("fields") or {}
        normalized.append(
            {
                "id": record.get("id"),
                "createdTime": record.get("createdTime"),
                "fields": {
                    f["name"]: present[f["name"]] if f["name"] in present else empty_value(f.get("type", ""))
                    for f in fields
                },
            }
        )
    return normalized


class _FakeAirtable:
    """Self-test wire: an empty account that creates bases and records like Airtable."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer patMOCKairtable.token":
            return httpx.Response(
                401, json={"error": {"type": "AUTHENTICATION_REQUIRED", "message": "Authentication required"}}
            )
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        table = {
            "id": "tblMock1",
            "name": "Default table",
            "primaryFieldId": "fldMock1",
            "fields": [
                {"id": "fldMock1", "name": "Name", "type": "singleLineText"},
                {"id": "fldMock2", "name": "Done", "type": "checkbox"},
            ],
        }
        if path == "/v0/meta/bases" and request.method == "GET":
            return httpx.Response(200, json={"bases": []})
        if path == "/v0/meta/bases" and request.method == "POST":
            return httpx.Response(200, json={"id": "appMock1", "tables": [table]})
        if path == "/v0/meta/bases/appMock1/tables":
            return httpx.Response(200, json={"tables": [table]})
        if path == "/v0/appMock1/tblMock1" and request.method == "POST":
            created = [
                {"id": f"recMock{i}", "createdTime": "2025-01-01T00:00:00.000Z", "fields": r["fields"]}
                for i, r in enumerate(body["records"], 1)
            ]
            return httpx.Response(200, json={"records": created})
        return httpx.Response(404, json={"error": "NOT_FOUND"})


class _AirtableBlock(ProviderCalls, Block):
    """Shared by the Airtable blocks: endpoint, token and checked requests."""

    categories = frozenset({BlockCategory.DATA})
    # AutoGPT's Airtable credential may be a token (api_key) or an OAuth access token; both are a bearer.
    credentials = (CredentialsField("credentials", provider="airtable", type="api_key"),)
    retry_policy = RetryPolicy(
        attempts=1, retry_on_errors=("Airtable server error", "HTTP 429", *TRANSPORT_FAILURES)
    )

    @staticmethod
    def endpoint(ctx: RunContext) -> ProviderEndpoint:
        endpoint = resolve_endpoint(ctx, "airtable", DEFAULT_BASE_URL)
        token = endpoint.api_key.get_secret_value() or str(endpoint.options.get("access_token") or "")
        return ProviderEndpoint(endpoint.provider, endpoint.base_url, SecretStr(token), endpoint.options)

    @staticmethod
    async def call(
        client: httpx.AsyncClient, endpoint: ProviderEndpoint, method: str, path: str, **kwargs: Any
    ) -> Any:
        """One request; the JSON answer, or a ProviderError saying what Airtable refused."""
        headers = {"Authorization": f"Bearer {endpoint.api_key.get_secret_value()}"}
        try:
            response = await client.request(method, endpoint.url(path), headers=headers, **kwargs)
        except RequestRefused:
            raise
        except httpx.HTTPError as exc:
            raise ProviderError(f"Airtable request failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            what = "Airtable server error" if response.status_code >= 500 else "Airtable refused the request"
            raise ProviderError(
                f"{what}: HTTP {response.status_code}: {answer_detail(response)}",
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"Airtable answered with non-JSON: {response.text[:200]!r}") from None


class AirtableCreateBaseBlock(_AirtableBlock):
    id = "f59b88a8-54ce-4676-a508-fd614b4e8dce"
    description = "Create or find a base in Airtable"
    repeated_output_pins = frozenset({"table"})

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='An Airtable credential reference: {"id": ..., "provider": "airtable", "type": "api_key"}',
        )
        workspace_id: str = Field(description="The workspace ID where the base will be created")
        name: str = Field(description="The name of the new base")
        find_existing: bool = Field(
            default=True,
            description="If true, return existing base with same name instead of creating duplicate",
        )
        tables: list[dict[str, Any]] = Field(
            default_factory=lambda: json.loads(json.dumps(DEFAULT_TABLES)),
            description=(
                "At least one table and field must be specified. Array of table objects to create in the "
                "base. Each table should have 'name' and 'fields' properties"
            ),
        )

    class Output(BlockOutput):
        base_id: str = Field(description="The ID of the created or found base")
        tables: list[dict[str, Any]] = Field(description="Array of table objects")
        table: dict[str, Any] = Field(description="A single table object")
        was_created: bool = Field(
            default=True, description="True if a new base was created, False if existing was found"
        )

    self_tests = (
        BlockSelfTest(
            input={"workspace_id": "wspMock1", "name": "Support log"},
            output=[
                ("base_id", "appMock1"),
                ("was_created", True),
                ("tables", lambda t: [x["id"] for x in t] == ["tblMock1"]),
                ("table", lambda t: t["name"] == "Default table"),
            ],
            mocks=mock_wire(_FakeAirtable),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        private_address_self_test(
            {"workspace_id": "wspMock1", "name": "Support log"}, {"credentials": TEST_CREDENTIALS}
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self.endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        try:
            async with self.client(ctx, REQUEST_TIMEOUT) as client:
                if input.find_existing:
                    # Airtable has no search by name: AutoGPT reads the first page of bases and compares.
                    listed = await self.call(client, endpoint, "GET", "/v0/meta/bases")
                    for base in listed.get("bases", []) if isinstance(listed, dict) else []:
                        if base.get("name") == input.name:
                            base_id = str(base.get("id"))
                            try:
                                answer = await self.call(
                                    client,
                                    endpoint,
                                    "GET",
                                    f"/v0/meta/bases/{quote(base_id, safe='')}/tables",
                                )
                                tables = answer.get("tables", []) if isinstance(answer, dict) else []
                            except (ProviderError, RequestRefused):
                                tables = []  # as AutoGPT: the base is found, its tables unknown
                            yield "base_id", base_id
                            yield "was_created", False
                            yield "tables", tables
                            for table in tables:
                                yield "table", table
                            return
                body = {"name": input.name, "workspaceId": input.workspace_id}
                if input.tables:
                    body["tables"] = input.tables
                created = await self.call(
                    client, endpoint, "POST", "/v0/meta/bases", json=convert_bools(body)
                )
        except (ProviderError, RequestRefused) as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        base_id = created.get("id") if isinstance(created, dict) else None
        if not base_id:
            yield "error", f"Airtable created no base: {json.dumps(created)[:300]}"
            return
        tables = created.get("tables", [])
        yield "base_id", base_id
        yield "was_created", True
        yield "tables", tables
        for table in tables:
            yield "table", table


class AirtableCreateRecordsBlock(_AirtableBlock):
    id = "42527e98-47b6-44ce-ac0e-86b4883721d3"
    description = "Create records in an Airtable table"
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='An Airtable credential reference: {"id": ..., "provider": "airtable", "type": "api_key"}',
        )
        base_id: str = Field(description="The Airtable base ID")
        table_id_or_name: str = Field(description="Table ID or name")
        records: list[dict[str, Any]] = Field(
            description="Array of records to create (each with 'fields' object)"
        )
        skip_normalization: bool = Field(
            default=False,
            description=(
                "Skip output normalization to get raw Airtable response (faster but may have missing fields)"
            ),
        )
        typecast: bool = Field(
            default=False, description="Automatically convert string values to appropriate types"
        )
        return_fields_by_field_id: bool | None = Field(default=None, description="Return fields by field ID")

    class Output(BlockOutput):
        records: list[dict[str, Any]] = Field(description="Array of created record objects")
        details: dict[str, Any] = Field(description="Details of the created records")

    self_tests = (
        BlockSelfTest(
            input={"base_id": "appMock1", "table_id_or_name": "tblMock1", "records": [{"Name": "Ada"}]},
            output=[
                (
                    "records",
                    [
                        {
                            "id": "recMock1",
                            "createdTime": "2025-01-01T00:00:00.000Z",
                            "fields": {"Name": "Ada", "Done": False},
                        }
                    ],
                )
            ],
            mocks=mock_wire(_FakeAirtable),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"base_id": "appMock1", "table_id_or_name": "tblMock1", "records": []},
            output=[("error", "At least one of fields or records must be provided")],
            mocks=mock_wire(_FakeAirtable),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        # AutoGPT's create_record asserts these before any request.
        if not input.records:
            yield "error", "At least one of fields or records must be provided"
            return
        if len(input.records) > MAX_RECORDS_PER_REQUEST:
            yield "error", "Only up to 10 records can be provided when using records"
            return
        try:
            endpoint = self.endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        body: dict[str, Any] = {"records": [{"fields": record} for record in input.records]}
        if input.return_fields_by_field_id:
            body["returnFieldsByFieldId"] = True
        if input.typecast:
            body["typecast"] = True
        table_path = f"{quote(input.base_id, safe='')}/{quote(input.table_id_or_name, safe='')}"
        try:
            async with self.client(ctx, REQUEST_TIMEOUT) as client:
                data = await self.call(
                    client, endpoint, "POST", f"/v0/{table_path}", json=convert_bools(body)
                )
                if not isinstance(data, dict):
                    raise ProviderError(f"Airtable answered with no records: {json.dumps(data)[:300]}")
                records = list(data.get("records") or [])
                if records and not input.skip_normalization:
                    schema = await self.call(
                        client, endpoint, "GET", f"/v0/meta/bases/{quote(input.base_id, safe='')}/tables"
                    )
                    tables = schema.get("tables", []) if isinstance(schema, dict) else []
                    wanted = input.table_id_or_name
                    table = next((t for t in tables if wanted in (t.get("id"), t.get("name"))), None)
                    if table is None:
                        raise ProviderError(f"Table '{wanted}' not found in base '{input.base_id}'")
                    records = normalize_records(records, table)
        except (ProviderError, RequestRefused) as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        yield "records", records
        if data.get("details"):
            yield "details", data["details"]
