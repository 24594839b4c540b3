"""Cost of rendering an ordinary template, as FillTextTemplate and AgentOutput do.

Run: .venv/bin/python -m bench.template_bench
Prints microseconds per render, best of several rounds, for a template with a loop and a filter
(rendered in the worker thread) and one with only `{{ ... }}` (rendered inline), through the
synchronous and the async entry points. It prints figures only; it never asserts timings.
"""

from __future__ import annotations

import asyncio
import timeit

from blocks.templating import render_template, render_template_async

VALUES = {"name": "Alice", "hello": "Hello", "items": [{"title": f"t{i}", "n": i} for i in range(5)]}
TEMPLATES = {
    "loop and filter": "{{ hello }}, {{ name }}! {% for it in items %}{{ it.title }}={{ it.n }}; {% endfor %}"
    "{{ name|upper }}",
    "substitution only": "{{ hello }}, {{ name }}",
}


async def _async_per_render(source: str, count: int) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(count):
        await render_template_async(source, VALUES)
    return (loop.time() - started) / count


def main() -> None:
    count = 2_000
    for label, source in TEMPLATES.items():
        render_template(source, VALUES)
        sync = min(timeit.repeat(lambda s=source: render_template(s, VALUES), number=count, repeat=7)) / count
        threaded = min(asyncio.run(_async_per_render(source, count)) for _ in range(5))
        print(
            f"{label:18} render_template {sync * 1e6:6.1f} us   render_template_async {threaded * 1e6:6.1f} us"
        )


if __name__ == "__main__":
    main()
