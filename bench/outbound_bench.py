"""ExecuteCode through the checked proxy (blocks/outbound/proxy.py): what repeated executions cost in
memory, and the e2b SDK's connection pools (it caches one per proxy URL for the life of the process).

Run: .venv/bin/python -m bench.outbound_bench [--executions N]
Needs the tests' E2B stand-in (tests/support_e2b.py, on 127.0.0.1). Prints the process's resident
memory after the first 10 and after all executions, the time per execution, and how many pools the SDK
holds. It prints figures only; it never asserts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def resident_kib() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 // 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=60)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support_blocks import credential, run_block
    from support_e2b import E2B_TEST_KEY, E2BStyleServer

    from blocks.library.code_executor import ExecuteCodeBlock

    server = E2BStyleServer()
    server.start()
    server.program("print(1)", {"stdout": ["1\n"]})
    secret = json.dumps({"api_key": E2B_TEST_KEY, "api_url": server.url, "sandbox_url": server.url})
    block = ExecuteCodeBlock()
    started = time.perf_counter()
    for i in range(args.executions):
        outputs = run_block(block, {"code": "print(1)"}, credential("e2b", secret))
        if ("stdout_logs", "1\n") not in outputs:
            print(f"execution {i + 1} failed: {outputs}")
            break
        if i + 1 == 10:
            print(f"after 10 executions: resident {resident_kib()} KiB")
    elapsed = time.perf_counter() - started
    print(f"after {args.executions} executions: resident {resident_kib()} KiB")
    print(f"{elapsed / args.executions * 1000:.1f} ms per execution (sandbox create, run, kill)")
    from e2b.api import client_async

    print(f"e2b SDK connection pools cached: {len(client_async._transports)}")
    server.stop()


if __name__ == "__main__":
    main()
