"""The Dagster UI, in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright for Python; never a browser downloaded by the test tool) against a real
`dagster-webserver` subprocess.

One Running_Total_v1 run is executed in process into a fresh SQLite-backed Dagster home before the
webserver starts; the webserver serves that home and a temporary copy of `agents/`
(AGENTFLOW_AGENTS_DIR). The tests open the job page and the finished run's page and check, on the
rendered pages, the op names the compiler gave the nodes, the node-output metadata of the steps and
the logged node lines, and the agent's outputs as the summary step recorded them. Full-page
screenshots of both pages go to artifacts/ui/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from dagster import DagsterInstance
from playwright.sync_api import Page, expect, sync_playwright
from support_processes import free_port, stop_process_group

from agent_defs.graph import load_graph_file
from agent_defs.jobs.compiler import SUMMARY_OP, compile_graph
from agent_defs.jobs.results import read_run_summary

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "agents"
WORKSPACE = ROOT / "workspace.yaml"
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
# How this machine's Chromium must be started (no sandbox as root, no GPU, no calls home).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCATION = "agent_defs"
REPOSITORY = "agentflow"
JOB = "Running_Total_v1"
INPUTS = {"numbers": [1, 2, 3]}
# The SPA fetches everything over GraphQL after load: generous waits, always on text.
UI_TIMEOUT_MS = 90_000

# Every variable that selects an instance, a store or a Dagster home is set by this module only.
_OWN_VARS = (
    "DAGSTER_HOME",
    "DAGSTER_PG_URL",
    "AGENTFLOW_DAGSTER_HOME",
    "AGENTFLOW_GRAPH_STORE",
    "AGENTFLOW_DATABASE_URL",
    "AGENTFLOW_AGENTS_DIR",
)


@dataclass
class UiSite:
    base: str
    run_id: str
    outputs: dict[str, list[Any]]
    op_names: list[str]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _wait_until_loaded(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    """Until the webserver answers GraphQL and the code location is loaded without an error."""
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
                 name loadStatus locationOrLoadError { __typename } } } } }"""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        try:
            response = httpx.post(url, json={"query": query}, timeout=30)
            response.raise_for_status()
            last = response.json()["data"]["workspaceOrError"]["locationEntries"]
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            last = exc
        else:
            entry = next((e for e in last if e["name"] == LOCATION), None)
            if entry is not None and entry["loadStatus"] == "LOADED":
                assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
                return
        time.sleep(0.5)
    raise AssertionError(f"code location not loaded in {timeout} s: {last}\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiSite]:
    base = tmp_path_factory.mktemp("ui")
    home = base / "dagster_home"
    home.mkdir()
    # The project's instance config as is: embedded SQLite storage under this home.
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    agents = base / "agents"
    agents.mkdir()
    for source in sorted(AGENTS.glob("*.json")):
        shutil.copy(source, agents / source.name)

    # The finished run the run page shows, executed before the webserver starts.
    job = compile_graph(load_graph_file(agents / "running_total.json"))
    assert job.name == JOB
    with DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(instance=instance, run_config={"inputs": INPUTS})
        assert result.success
        summary = read_run_summary(instance, result.run_id)
    assert summary is not None
    assert summary["outputs"]["totals"] == [1.0, 3.0, 6.0], summary

    env = {k: v for k, v in os.environ.items() if k not in _OWN_VARS}
    env.update(
        DAGSTER_HOME=str(home),
        AGENTFLOW_DAGSTER_HOME=str(home),
        AGENTFLOW_AGENTS_DIR=str(agents),
        PYTHONUNBUFFERED="1",
    )
    port = free_port()
    log = base / "webserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(WORKSPACE)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_until_loaded(f"http://127.0.0.1:{port}/graphql", proc, log)
        yield UiSite(
            base=f"http://127.0.0.1:{port}",
            run_id=result.run_id,
            outputs=summary["outputs"],
            op_names=sorted(node.name for node in job.graph.nodes),
            log=log,
        )
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1800},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.set_default_navigation_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            context.close()


def _visible(page: Page, text: str, exact: bool = True) -> None:
    expect(page.get_by_text(text, exact=exact).first).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_job_page_shows_the_compiled_node_names(site: UiSite, browser_page: Page) -> None:
    page = browser_page
    # The op names the compiler gives the nodes (block + label), regions and the run's own steps.
    assert {
        "AgentInput_Numbers",
        "Calculator_Total_starts_at_zero",
        "StepThroughItems_Each_number",
        "region_1_Add_to_total",
        "agentflow_start",
        SUMMARY_OP,
    } == set(site.op_names)
    page.goto(f"{site.base}/locations/{REPOSITORY}@{LOCATION}/jobs/{JOB}")
    _visible(page, JOB)
    # Each op is a box of the rendered op graph (long names are cut by CSS, not in the text).
    for name in site.op_names:
        _visible(page, name)
    _visible(page, "Iteration with an accumulator", exact=False)  # the graph's description
    _visible(page, "agentflow/graph_id: 4f6e2a90-8d3b-4b7a-a1c5-6e2f9d8b7c02")

    # Selecting the region op opens its invocation in the sidebar, under its full name.
    page.get_by_text("region_1_Add_to_total", exact=True).first.click()
    page.wait_for_url(f"**/jobs/{JOB}/region_1_Add_to_total")
    _visible(page, "Invocation")
    _visible(page, "agentflow_region_with_inbox")  # the op definition regions are made of
    # the graph's box and the sidebar's invocation heading
    expect(page.get_by_text("region_1_Add_to_total", exact=True).nth(1)).to_be_visible(timeout=UI_TIMEOUT_MS)
    # The sidebar's run history of this op: the finished run below is this job's run.
    _visible(page, "Last 1 Run")
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "job_page.png"), full_page=True)


def test_run_page_shows_node_output_metadata_and_the_agents_outputs(site: UiSite, browser_page: Page) -> None:
    page = browser_page
    run_url = f"{site.base}/runs/{site.run_id}"

    page.goto(run_url)
    _visible(page, site.run_id.split("-")[0])  # the run's short id in the header
    _visible(page, "Success")
    _visible(page, JOB, exact=False)

    # The region step logs its node executions, one line each (3 numbers: 3 adds, 3 totals, 3 reports).
    page.goto(f"{run_url}?logs={quote('step:region_1_Add_to_total')}")
    _visible(page, "node add (CalculatorBlock) COMPLETED", exact=False)
    _visible(page, "node totals (AgentOutputBlock) COMPLETED", exact=False)
    _visible(page, "node report (FillTextTemplateBlock) COMPLETED", exact=False)
    _visible(page, "node lines (AgentOutputBlock) COMPLETED", exact=False)

    # A node step's output metadata in full, as a user opens it ("View full message"): the node's
    # execution and the values it yielded on its pins (StepThroughItems: each item and its key).
    page.goto(f"{run_url}?logs={quote('step:StepThroughItems_Each_number')}")
    _visible(page, "agentflow_details")
    page.get_by_role("button", name="View full message").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
    for text in (
        '"node_id": "each", "block": "StepThroughItemsBlock", "status": "COMPLETED"',
        '"outputs": [["item", 1], ["key", 0], ["item", 2], ["key", 1], ["item", 3], ["key", 2]]',
    ):
        expect(dialog.get_by_text(text, exact=False).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)

    # Every step output, with the node-output metadata the compiler puts on it.
    page.goto(f"{run_url}?logs={quote('type:STEP_OUTPUT')}")
    _visible(page, SUMMARY_OP)
    for step in ("AgentInput_Numbers", "StepThroughItems_Each_number", "region_1_Add_to_total"):
        _visible(page, step)
    # node and region steps: node_executions, node_errors, cost, ... and the per-node details
    node_executions = page.get_by_text("node_executions", exact=True)
    expect(node_executions.nth(4)).to_be_visible(timeout=UI_TIMEOUT_MS)  # 4 node/region steps + summary
    expect(page.get_by_text("agentflow_details", exact=True).nth(3)).to_be_visible(timeout=UI_TIMEOUT_MS)

    # The agent's outputs, as the summary step recorded them (the value is the metadata's JSON text).
    _visible(page, "graph_outputs")
    expected = json.dumps(site.outputs)
    assert '"totals": [1.0, 3.0, 6.0]' in expected
    _visible(page, expected)
    _visible(page, '"item 2: total 6.0"', exact=False)
    # For the screenshot: the step chart without its time axis (steps of a few ms are slivers in
    # the timed one), each step under its name.
    chart_mode = page.locator("button[aria-selected]").first
    chart_mode.click()
    expect(chart_mode).to_have_attribute("aria-selected", "true", timeout=UI_TIMEOUT_MS)
    page.mouse.move(0, 0)
    page.wait_for_timeout(2500)  # the chart animates into its new layout (cosmetic; nothing checked)
    page.screenshot(path=str(ARTIFACTS / "run_page.png"), full_page=True)
