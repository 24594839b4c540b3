"""The malformed-input corpus: every bad graph is refused by the real `agentflow` command with a
message naming the precise problem and where it is, and never with a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent_defs.cli import main as cli_main
from agent_defs.paths import project_root

ROOT = project_root()
CORPUS = project_root() / "tests" / "corpus" / "bad_graphs"
EXPECTED: dict[str, list[str]] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
AGENTFLOW = Path(sys.executable).parent / "agentflow"

TEMPLATE = "db7d8f02-2f44-4c55-ab7a-eae0941f0c30"
AGENT_INPUT = "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b"
AGENT_OUTPUT = "363ae599-353e-4804-937e-b2ee3cef3da4"


def agentflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENTFLOW), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream


def test_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != "expected.json"}
    assert files == set(EXPECTED), "every corpus file needs an expectation and every expectation a file"
    assert len(files) >= 40
    assert all(EXPECTED.values()), "every case must expect at least one substring"


GOOD = (ROOT / "agents" / "count_to_n.json", ROOT / "agents" / "running_total.json")


def _split_report(stdout: str) -> dict[str, str]:
    """`agentflow validate` output, per file: its FAIL/OK line and the problem lines under it."""
    blocks: dict[str, str] = {}
    current = ""
    for line in stdout.splitlines(keepends=True):
        if line.startswith(("FAIL ", "OK   ")):
            current = line[5:].split(" (", 1)[0]
            blocks[current] = ""
        blocks[current] += line
    return blocks


@pytest.fixture(scope="module")
def corpus_report() -> dict[str, str]:
    """One `agentflow validate` over every corpus file, with good graphs between and after them."""
    bad = [CORPUS / name for name in sorted(EXPECTED)]
    half = len(bad) // 2
    proc = agentflow("validate", *bad[:half], GOOD[0], *bad[half:], GOOD[1])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    assert proc.stderr == ""
    return _split_report(proc.stdout)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_reports_the_problem_and_where(name: str, corpus_report: dict[str, str]) -> None:
    output = corpus_report[str(CORPUS / name)]
    assert output.startswith(f"FAIL {CORPUS / name} ("), output
    missing = [s for s in EXPECTED[name] if s not in output]
    assert not missing, f"missing {missing!r} in:\n{output}"


def test_good_graphs_validated_with_the_corpus_still_pass(corpus_report: dict[str, str]) -> None:
    for good in GOOD:
        assert corpus_report[str(good)].startswith(f"OK   {good} ("), corpus_report[str(good)]
    assert len(corpus_report) == len(EXPECTED) + len(GOOD)


def test_import_stores_the_good_graphs_and_nothing_of_the_corpus(tmp_path: Path) -> None:
    store = tmp_path / "store"
    bad = [CORPUS / name for name in sorted(EXPECTED)]
    proc = agentflow("import", "--store-dir", store, *bad, *GOOD)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    for name in sorted(EXPECTED):
        block = next(b for b in proc.stdout.split("FAIL ") if b.startswith(f"{CORPUS / name}:"))
        assert "not stored" in block, block
        missing = [s for s in EXPECTED[name] if s not in block]
        assert not missing, f"missing {missing!r} in:\n{block}"
    stored = [line for line in proc.stdout.splitlines() if line.startswith("stored ")]
    assert [line.split()[1:3] for line in stored] == [["Count", "to"], ["Running", "Total"]], proc.stdout
    graphs = agentflow("graphs", "--store-dir", store)
    assert graphs.returncode == 0, graphs.stdout + graphs.stderr
    assert sorted(line.split()[-2:] for line in graphs.stdout.splitlines()) == [
        ["Running", "Total"],
        ["to", "N"],
    ], graphs.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_run_refuses_a_bad_graph(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`agentflow run`'s own entry point, in this process (55 command starts would cost a minute)."""
    code = cli_main(["run", str(CORPUS / name)])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert out == "", "nothing may run"
    assert err.startswith("error: "), err
    assert "internal error" not in err, err
    # The same precise problem as `validate` gives (the file-level summary line aside).
    missing = [s for s in EXPECTED[name] if s not in err and not s.endswith(" problems")]
    assert not missing, f"missing {missing!r} in:\n{err}"


def test_many_problems_are_reported_once_each_and_nothing_spurious() -> None:
    """Load-time and validation problems come together; the link from the unreadable node is not
    reported again as coming from a missing node."""
    proc = agentflow("validate", CORPUS / "many_problems.json")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("  - ")]
    assert len(lines) == 7, proc.stdout
    assert len(set(lines)) == 7, proc.stdout
    assert "missing node broken" not in proc.stdout


def _dynamic_pin_graph(sink_pin: str) -> dict[str, object]:
    return {
        "id": "g-dynamic",
        "version": 1,
        "name": "Dynamic Pin",
        "nodes": [
            {"id": "in", "block_id": AGENT_INPUT, "input_default": {"name": "who", "value": "world"}},
            {"id": "fmt", "block_id": TEMPLATE, "input_default": {"format": "hello {{ key }}"}},
            {"id": "out", "block_id": AGENT_OUTPUT, "input_default": {"name": "greeting"}},
        ],
        "links": [
            {"id": "l1", "source_id": "in", "source_name": "result", "sink_id": "fmt", "sink_name": sink_pin},
            {"id": "l2", "source_id": "fmt", "source_name": "output", "sink_id": "out", "sink_name": "value"},
        ],
    }


def test_a_dynamic_pin_on_an_existing_base_pin_is_fine(tmp_path: Path) -> None:
    good = tmp_path / "dynamic_ok.json"
    good.write_text(json.dumps(_dynamic_pin_graph("values_#_key")), encoding="utf-8")
    proc = agentflow("validate", good)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK"), proc.stdout
    run = agentflow("run", good, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["outputs"] == {"greeting": ["hello world"]}


def test_the_same_dynamic_pin_on_a_missing_base_pin_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "dynamic_bad.json"
    bad.write_text(json.dumps(_dynamic_pin_graph("nosuch_#_key")), encoding="utf-8")
    proc = agentflow("validate", bad)
    assert proc.returncode == 1
    assert "node fmt (FillTextTemplateBlock): pin 'nosuch_#_key'" in proc.stdout, proc.stdout
    assert "has no input pin 'nosuch'" in proc.stdout, proc.stdout


def test_an_unreadable_file_is_reported_not_raised(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"name": "caf\xe9"}')
    proc = agentflow("validate", bad)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert f"file {bad}: cannot be read" in proc.stdout, proc.stdout


def test_the_code_location_loads_the_good_graphs_stored_among_the_corpus(tmp_path: Path) -> None:
    """A store holding every corpus case and the good graphs: the catalog the code location builds
    has a job for each good graph and reports each bad one by its file or its graph's name (the
    directory store reads strict JSON, so a NaN file is "not valid JSON" there, with its line)."""
    from agent_defs.jobs.catalog import build_catalog
    from agent_defs.store import DirectoryGraphStore

    for path in [*(CORPUS / name for name in EXPECTED), *GOOD]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    catalog = build_catalog(DirectoryGraphStore(tmp_path))
    assert set(catalog.jobs) == {"Count_to_N_v1", "Running_Total_v1"}
    text = "\n".join(catalog.problems)
    for name in sorted(EXPECTED):
        try:
            graph_name = json.loads((CORPUS / name).read_text(encoding="utf-8"))["name"]
        except (ValueError, TypeError, KeyError):
            graph_name = None
        # A bad sub-graph is reported under its own name (the first expectation of those cases).
        places = (f"file {tmp_path / name}:", f"graph {graph_name!r}", f"graph {EXPECTED[name][0]!r}")
        reported = any(place in text for place in places)
        assert reported, f"{name} is not reported:\n{text}"
