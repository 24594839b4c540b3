"""Request queue figures with a real dagster-daemon: enqueue -> run start latency (median of 20), and
sustained runs per second for 20 one-node requests with a global limit of 4 (and how long those runs
took from STARTING to STARTED); memory per run worker.

Run: .venv/bin/python -m bench.platform_bench [--postgres URL]
Needs Redis at 127.0.0.1:6379 (and PostgreSQL for --postgres). Prints figures; asserts no timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import redis

from agent_defs.graph.builder import GraphBuilder
from agent_defs.paths import project_root
from bench.graphs import export
from blocks.library.maths import CalculatorBlock

ONE_NODE_GRAPH_ID = "5d1c0f3e-0000-4000-8000-0000000000b1"


def _one_node_graph() -> dict:
    b = GraphBuilder("One node", graph_id=ONE_NODE_GRAPH_ID)
    b.node(CalculatorBlock, node_id="add", operation="Add", a=1, b=2, label="Add")
    return export(b.build())


class MemorySampler(threading.Thread):
    """Peak memory of run worker processes: RSS, and PSS (shared pages split among their sharers,
    the fair share for workers forked from one preloaded parent)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.rss: dict[int, int] = {}
        self.pss: dict[int, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for pid_dir in Path("/proc").iterdir():
                if not pid_dir.name.isdigit():
                    continue
                try:
                    cmdline = (pid_dir / "cmdline").read_bytes()
                    if b"spawn_main" not in cmdline and b"forkserver" not in cmdline:
                        continue
                    pid = int(pid_dir.name)
                    for line in (pid_dir / "smaps_rollup").read_text().splitlines():
                        field, _, rest = line.partition(":")
                        if field in ("Rss", "Pss"):
                            kib = int(rest.split()[0])
                            target = self.rss if field == "Rss" else self.pss
                            target[pid] = max(target.get(pid, 0), kib)
                except (OSError, ValueError, IndexError):
                    continue
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--postgres", metavar="URL", help="Dagster storage on this PostgreSQL (a fresh database)"
    )
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()

    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from agent_defs.instance import prepare_dagster_home
    from agent_defs.requests.queue import RequestQueue

    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "agents"
        agents.mkdir()
        (agents / "one_node.json").write_text(json.dumps(_one_node_graph()))
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        os.environ.update(
            AGENTFLOW_AGENTS_DIR=str(agents),
            AGENTFLOW_DAGSTER_HOME=str(Path(tmp) / "home"),
            AGENTFLOW_REDIS_URL="redis://127.0.0.1:6379/0",
            AGENTFLOW_REDIS_PREFIX=prefix,
        )
        if args.postgres:
            os.environ["DAGSTER_PG_URL"] = args.postgres
        else:
            os.environ.pop("DAGSTER_PG_URL", None)
        prepare_dagster_home()
        daemon = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-daemon"),
                "run",
                "-w",
                str(project_root() / "workspace.yaml"),
            ],
            cwd=project_root(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(decode_responses=True)
        queue = RequestQueue(client, prefix)
        sampler = MemorySampler()
        sampler.start()
        try:
            with DagsterInstance.get() as instance:

                def started_at(request_id: str, timeout: float = 120) -> float:
                    deadline = time.time() + timeout
                    while time.time() < deadline:
                        runs = instance.get_run_records(
                            RunsFilter(tags={"agentflow/request_id": request_id}), limit=1
                        )
                        if runs and runs[0].start_time:
                            return runs[0].start_time
                        time.sleep(0.05)
                    raise TimeoutError(f"request {request_id} did not start within {timeout} s")

                def finished(request_ids: list[str], timeout: float = 300) -> float:
                    deadline = time.time() + timeout
                    while time.time() < deadline:
                        done = [
                            r
                            for r in instance.get_run_records(
                                RunsFilter(statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE])
                            )
                            if r.dagster_run.tags.get("agentflow/request_id") in request_ids
                        ]
                        if len(done) == len(request_ids):
                            return max(r.end_time or 0 for r in done)
                        time.sleep(0.2)
                    raise TimeoutError("the burst did not finish")

                # Warm up: the daemon's first ticks load the code location.
                warm = f"warm-{uuid.uuid4().hex}"
                queue.enqueue({"request_id": warm, "graph_id": ONE_NODE_GRAPH_ID, "user_id": "bench"})
                started_at(warm, timeout=180)

                latencies = []
                for i in range(args.samples):
                    request_id = f"lat-{i}-{uuid.uuid4().hex[:6]}"
                    enqueued = time.time()
                    queue.enqueue(
                        {"request_id": request_id, "graph_id": ONE_NODE_GRAPH_ID, "user_id": f"u{i}"}
                    )
                    latencies.append(started_at(request_id) - enqueued)
                    # Spread arrivals over the sensor's 5 s cycle, as independent producers would.
                    time.sleep(0.37 * (i % 7))
                latencies.sort()
                print(
                    f"enqueue -> run start over {len(latencies)} requests: median {statistics.median(latencies):.2f} s, "
                    f"min {latencies[0]:.2f} s, max {latencies[-1]:.2f} s"
                )

                burst = [f"burst-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
                began = time.time()
                for i, request_id in enumerate(burst):
                    queue.enqueue(
                        {"request_id": request_id, "graph_id": ONE_NODE_GRAPH_ID, "user_id": f"user{i % 10}"}
                    )
                ended = finished(burst)
                elapsed = ended - began
                print(
                    f"20 one-node requests, global limit 4: all finished {elapsed:.1f} s after the first enqueue "
                    f"= {20 / elapsed:.2f} runs per second"
                )
                # What run_monitoring.start_timeout_seconds must allow: launch (STARTING) -> the worker's
                # first event (STARTED), with 4 runs starting at once.
                starts = []
                for record in instance.get_run_records(RunsFilter(tags={"agentflow/request_id": burst})):
                    stats = instance.get_run_stats(record.dagster_run.run_id)
                    if stats.launch_time and stats.start_time:
                        starts.append(stats.start_time - stats.launch_time)
                starts.sort()
                print(
                    f"STARTING -> STARTED over the {len(starts)} burst runs: median "
                    f"{statistics.median(starts):.2f} s, max {starts[-1]:.2f} s"
                )
        finally:
            sampler.stopped.set()
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            for key in client.keys(f"{prefix}:*"):
                client.delete(key)
        if sampler.rss:
            rss, pss = sorted(sampler.rss.values()), sorted(sampler.pss.values())
            print(
                f"run worker memory over {len(rss)} processes: RSS median {statistics.median(rss) / 1024:.0f} MiB "
                f"(max {rss[-1] / 1024:.0f}), PSS median {statistics.median(pss) / 1024:.0f} MiB "
                f"(max {pss[-1] / 1024:.0f})"
            )


if __name__ == "__main__":
    main()
