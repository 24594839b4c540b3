"""A local stand-in for Airtable's REST API on 127.0.0.1: bases and records kept in memory.

Header `Authorization: Bearer <token>`; a wrong token: 401 {"error": {"type": "AUTHENTICATION_REQUIRED",
"message": "Authentication required"}}. Every request is recorded in `requests` as {"method", "path",
"headers", "body"}. Ids are derived from the request (deterministic):

  GET  /v0/meta/bases                  -> {"bases": [{id, name, permissionLevel}]}
  POST /v0/meta/bases {name, workspaceId, tables}
       -> {id, tables: [{id, name, description?, primaryFieldId, fields: [{id, name, type, options?}], views}]}
       A workspaceId not starting "wsp": 422 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND; no tables: 422.
  GET  /v0/meta/bases/<baseId>/tables  -> {"tables": [...]}; an unknown base: 404 {"error": "NOT_FOUND"}
  POST /v0/<baseId>/<table id or name> {records: [{fields}], typecast?, returnFieldsByFieldId?}
       -> {"records": [{id, createdTime, fields}]}; like Airtable, empty values ("" / false / [] / null)
       are left out of the returned fields. An unknown table: 404 TABLE_NOT_FOUND; an unknown field:
       422 UNKNOWN_FIELD_NAME; more than 10 records: 422 INVALID_RECORDS. A field value "server-fail":
       500 whose body echoes the token.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import unquote

from support_servers import RecordingServer, StandInHandler

AIRTABLE_TOKEN = "patSECRET-6931.do-not-leak"
WORKSPACE_ID = "wspTestWorkspace1"
CREATED_TIME = "2025-06-01T12:00:00.000Z"


def _id(prefix: str, *parts: Any) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return prefix + digest[:14]


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


class _Handler(StandInHandler):
    def _handle(self) -> None:
        server: AirtableServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.read_body()
        request = {
            "method": self.command,
            "path": unquote(self.path.split("?", 1)[0]),
            "headers": self.header_dict(),
            "body": json.loads(raw) if raw else None,
        }
        server.record(request)
        status, payload = server.answer(request)
        self.send_json(status, payload)

    do_GET = _handle
    do_POST = _handle


class AirtableServer(RecordingServer):
    def __init__(self, token: str = AIRTABLE_TOKEN) -> None:
        super().__init__(_Handler)
        self.token = token
        # base id -> {"id", "name", "workspaceId", "tables": [...], "records": {table id: [record]}}
        self.bases: dict[str, dict[str, Any]] = {}

    def _reset_state(self) -> None:
        self.bases.clear()

    def answer(self, request: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            if request["headers"].get("authorization") != f"Bearer {self.token}":
                return 401, _error("AUTHENTICATION_REQUIRED", "Authentication required")
            method, path, body = request["method"], request["path"], request["body"] or {}
            parts = [p for p in path.split("/") if p]
            if parts[:3] == ["v0", "meta", "bases"]:
                if len(parts) == 3 and method == "GET":
                    bases = [
                        {"id": b["id"], "name": b["name"], "permissionLevel": "create"}
                        for b in self.bases.values()
                    ]
                    return 200, {"bases": bases}
                if len(parts) == 3 and method == "POST":
                    return self._create_base(body)
                if len(parts) == 5 and parts[4] == "tables" and method == "GET":
                    base = self.bases.get(parts[3])
                    if base is None:
                        return 404, {"error": "NOT_FOUND"}
                    return 200, {"tables": base["tables"]}
            if len(parts) == 3 and parts[0] == "v0" and method == "POST":
                return self._create_records(parts[1], parts[2], body)
            return 404, {"error": "NOT_FOUND"}

    def _create_base(self, body: dict[str, Any]) -> tuple[int, Any]:
        name, workspace = body.get("name"), str(body.get("workspaceId") or "")
        if not workspace.startswith("wsp"):
            return 422, _error(
                "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
                "Invalid permissions, or the requested model was not found.",
            )
        tables_in = body.get("tables")
        if not name or not isinstance(tables_in, list) or not tables_in:
            return 422, _error("INVALID_REQUEST_UNKNOWN", "A base needs a name and at least one table")
        base_id = _id("app", name, workspace, len(self.bases))
        tables = []
        for t_index, table in enumerate(tables_in):
            fields = [
                {
                    "id": _id("fld", base_id, t_index, f_index),
                    "name": field["name"],
                    "type": field["type"],
                    **({"options": field["options"]} if field.get("options") else {}),
                    **({"description": field["description"]} if field.get("description") else {}),
                }
                for f_index, field in enumerate(table.get("fields") or [])
            ]
            if not fields:
                return 422, _error("INVALID_REQUEST_UNKNOWN", f"table {table.get('name')!r} has no fields")
            tables.append(
                {
                    "id": _id("tbl", base_id, t_index),
                    "name": table["name"],
                    **({"description": table["description"]} if table.get("description") else {}),
                    "primaryFieldId": fields[0]["id"],
                    "fields": fields,
                    "views": [{"id": _id("viw", base_id, t_index), "name": "Grid view", "type": "grid"}],
                }
            )
        self.bases[base_id] = {
            "id": base_id,
            "name": name,
            "workspaceId": workspace,
            "tables": tables,
            "records": {t["id"]: [] for t in tables},
        }
        return 200, {"id": base_id, "tables": tables}

    def _create_records(self, base_id: str, table_ref: str, body: dict[str, Any]) -> tuple[int, Any]:
        base = self.bases.get(base_id)
        table = next((t for t in (base or {}).get("tables", []) if table_ref in (t["id"], t["name"])), None)
        if base is None or table is None:
            return 404, _error(
                "TABLE_NOT_FOUND" if base else "NOT_FOUND",
                f"Could not find table {table_ref} in application {base_id}",
            )
        records_in = body.get("records")
        if not isinstance(records_in, list) or not records_in or len(records_in) > 10:
            return 422, _error("INVALID_RECORDS", "You must provide an array of up to 10 record objects")
        by_name = {f["name"]: f for f in table["fields"]}
        by_id = {f["id"]: f for f in table["fields"]}
        created = []
        for record in records_in:
            fields = record.get("fields") or {}
            for name, value in fields.items():
                if name not in by_name and name not in by_id:
                    return 422, _error("UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
                if value == "server-fail":
                    return 500, _error("SERVER_ERROR", f"failure for token {self.token}")
            key = "id" if body.get("returnFieldsByFieldId") else "name"
            kept = {
                (by_name.get(n) or by_id[n])[key]: v
                for n, v in fields.items()
                if v not in ("", False, None, [])
            }
            stored = {
                "id": _id("rec", base_id, table["id"], len(base["records"][table["id"]])),
                "createdTime": CREATED_TIME,
                "fields": kept,
            }
            base["records"][table["id"]].append(stored)
            created.append(stored)
        return 200, {"records": created}
