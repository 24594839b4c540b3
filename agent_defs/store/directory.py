"""Graphs as export files (`*.json`) in one directory: the embedded default, `agents/`.

Files whose name starts with `_` are not graphs (e.g. `_block_ids.json`). Which version of a graph is
active comes from the files themselves: the highest version, unless a lower one says
`"is_active": true` (AutoGPT exports carry the flag).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agent_defs.graph import Graph, GraphProblem, parse_graph
from agent_defs.store.base import (
    GraphNotFound,
    GraphRef,
    active_versions,
    checked_export,
    choose_version,
    content_key,
)

_LOCK_NAME = ".agentflow-store.lock"


@dataclass(frozen=True, slots=True)
class _Header:
    """What a listing needs from one file, read once per change of the file."""

    graph_id: str
    version: int
    name: str
    flagged_active: bool


@dataclass(frozen=True, slots=True)
class _Scan:
    headers: dict[Path, _Header]
    problems: list[GraphProblem]
    # (id, version) -> its one file; keys claimed by two files are left out (both are problems).
    files: dict[tuple[str, int], Path]
    active: set[tuple[str, int]]


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60].strip("-")
    return slug or "graph"


class DirectoryGraphStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # path -> (stat signature, header or problem message): a file is parsed again only when it
        # changes, so listing and then loading many graphs does not re-read every file each time.
        self._cache: dict[Path, tuple[tuple[int, int, int], _Header | str]] = {}
        self._cache_lock = threading.Lock()
        # The latest listing: loads look files up here and list again only on a miss, so loading
        # every graph costs one listing, not one per graph.
        self._last: _Scan | None = None

    def __repr__(self) -> str:
        return f"DirectoryGraphStore({str(self.root)!r})"

    # --- reading -------------------------------------------------------------------------------------

    def _read_header(self, path: Path) -> _Header | str:
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as exc:
            return f"cannot be read: {exc.strerror or exc}"
        except orjson.JSONDecodeError as exc:
            return f"is not valid JSON: {exc}"
        if not isinstance(data, dict):
            return f"must be a JSON object, got {type(data).__name__}"
        graph_id = data.get("id")
        if not isinstance(graph_id, str) or not graph_id:
            return "has no string 'id'"
        version = data.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            return f"'version' must be a positive integer, got {version!r}"
        name = data.get("name")
        return _Header(
            graph_id=graph_id,
            version=version,
            name=name if isinstance(name, str) and name else graph_id,
            flagged_active=data.get("is_active") is True,
        )

    def _scan(self) -> _Scan:
        problems: list[GraphProblem] = []
        headers: dict[Path, _Header] = {}
        if not self.root.is_dir():
            problems.append(GraphProblem(f"directory {self.root}", "does not exist"))
            return _Scan(headers, problems, {}, set())
        paths = sorted(p for p in self.root.glob("*.json") if not p.name.startswith("_"))
        with self._cache_lock:
            seen: dict[Path, tuple[tuple[int, int, int], _Header | str]] = {}
            for path in paths:
                try:
                    st = path.stat()
                except OSError:
                    continue  # removed since the listing
                signature = (st.st_mtime_ns, st.st_size, st.st_ino)
                cached = self._cache.get(path)
                entry = cached[1] if cached and cached[0] == signature else self._read_header(path)
                seen[path] = (signature, entry)
            self._cache = seen
        claims: dict[tuple[str, int], list[Path]] = {}
        for path, (_, entry) in seen.items():
            if isinstance(entry, str):
                problems.append(GraphProblem(f"file {path}", entry))
            else:
                headers[path] = entry
                claims.setdefault((entry.graph_id, entry.version), []).append(path)
        files: dict[tuple[str, int], Path] = {}
        for (graph_id, version), owners in claims.items():
            if len(owners) == 1:
                files[(graph_id, version)] = owners[0]
                continue
            for path in owners:
                others = ", ".join(p.name for p in owners if p != path)
                problems.append(
                    GraphProblem(
                        f"file {path}",
                        f"graph {graph_id} v{version} is also in {others}; neither is used",
                    )
                )
        problems.sort(key=lambda p: p.graph)
        flags = {key: headers[path].flagged_active for key, path in files.items()}
        self._last = _Scan(headers, problems, files, active_versions(flags))
        return self._last

    def refs(self) -> list[GraphRef]:
        scan = self._scan()
        refs = [
            GraphRef(
                graph_id=key[0],
                version=key[1],
                name=scan.headers[path].name,
                active=key in scan.active,
                source=f"file {path}",
            )
            for key, path in scan.files.items()
        ]
        return sorted(refs, key=lambda r: (r.graph_id, r.version))

    def problems(self) -> list[GraphProblem]:
        return self._scan().problems

    def _read(self, graph_id: str, version: int) -> tuple[dict[str, Any], Path, bool]:
        """(the export, its file, whether it is active), from the latest listing if it still holds."""
        for scan in (self._last, None):
            scan = scan or self._scan()
            path = scan.files.get((graph_id, version))
            if path is None:
                continue
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if isinstance(data, dict) and (data.get("id"), data.get("version", 1)) == (graph_id, version):
                return data, path, (graph_id, version) in scan.active
        raise GraphNotFound(graph_id, version, f"directory {self.root}")

    def load_raw(self, graph_id: str, version: int) -> dict[str, Any]:
        """The stored export, with `is_active` set to what this store considers active."""
        data, _, active = self._read(graph_id, version)
        data["is_active"] = active
        return data

    def load(self, graph_id: str, version: int) -> Graph:
        data, path, _ = self._read(graph_id, version)
        return parse_graph(data, source=f"file {path}")

    # --- writing -------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes and threads (flock holds per open file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write(self, path: Path, data: Mapping[str, Any], replace: bool) -> bool:
        """Write atomically: readers never see half a file. Without `replace`, False if `path` exists."""
        tmp = path.with_name(f"_{path.name}.{uuid.uuid4().hex}.part")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        try:
            if replace:
                os.replace(tmp, path)
                return True
            try:
                os.link(tmp, path)  # fails if the name is taken, unlike rename
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def save(self, export: Mapping[str, Any]) -> GraphRef:
        body, graph = checked_export(export)
        key = content_key(body)
        with self._locked():
            scan = self._scan()
            stored: dict[int, str | None] = {}
            for path, header in scan.headers.items():
                if header.graph_id != graph.id:
                    continue
                unique = scan.files.get((header.graph_id, header.version)) == path
                stored[header.version] = self._content_key(path) if unique else None
            version, exists = choose_version(graph.version, key, stored)
            if exists:
                # The same graph again: nothing is written, activation is left as it is.
                ref_key = (graph.id, version)
                path = scan.files[ref_key]
                return GraphRef(
                    graph.id, version, scan.headers[path].name, ref_key in scan.active, f"file {path}"
                )
            body["version"] = version
            body["is_active"] = True
            target = self._free_name(graph, version, body)
            # Exactly one file of this graph says is_active, so the saved version is the active one.
            for path, header in scan.headers.items():
                if header.graph_id == graph.id and header.flagged_active:
                    data = orjson.loads(path.read_bytes())
                    data["is_active"] = False
                    self._write(path, data, replace=True)
            self._last = None  # the listing no longer says which version is active
        return GraphRef(graph.id, version, graph.name, True, f"file {target}")

    def _content_key(self, path: Path) -> str | None:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return content_key(data) if isinstance(data, dict) else None

    def _free_name(self, graph: Graph, version: int, body: Mapping[str, Any]) -> Path:
        """Write `<slug>.v<version>.json`; another graph with the same name gets the id in its name."""
        slug = _slug(graph.name)
        for candidate in (slug, f"{slug}-{_slug(graph.id)[:12]}", f"{slug}-{_slug(graph.id)}"):
            path = self.root / f"{candidate}.v{version}.json"
            if self._write(path, body, replace=False):
                return path
        while True:  # foreign files hold every readable name: fall back to a unique one
            path = self.root / f"{slug}-{uuid.uuid4().hex[:8]}.v{version}.json"
            if self._write(path, body, replace=False):
                return path
