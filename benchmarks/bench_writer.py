"""CPU per logged row of the event writer (``EventWriter.submit`` with durable acks): N
prediction rows (one row of 30 inputs each, as the gateway logs them) submitted from one
event loop with 64 in flight, into a fresh SQLite store. Prints wall and process CPU time
per row (the loop's and the writer thread's together: they share the GIL).

    .venv/bin/python benchmarks/bench_writer.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

from workbench import events
from workbench.events import prediction_row
from workbench.writer import EventWriter

RECORD = [{"mean": 0.5, "std": 0.2, "interval": [0.1, 0.9],
           "probabilities": {"no": 0.5, "yes": 0.5}, "label": "yes"}]
INPUTS = [[0.123456 * i for i in range(30)]]


async def _submit_all(writer: EventWriter, n: int) -> tuple[float, float]:
    room = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with room:
            await writer.submit("predictions", prediction_row(
                request_id=f"r{i:020d}", experiment="bench", arm="a", model_tag="m:1",
                unit=str(i), records=RECORD, status="ok", latency_ms=1.0, instances=INPUTS))

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        writer = EventWriter(events.engine(f"sqlite:///{tmp}/events.db"), enabled=True)
        try:
            wall, cpu = asyncio.run(_submit_all(writer, n))
        finally:
            writer.close()
        print(f"{n} rows: wall {wall / n * 1e6:.0f} us/row, CPU {cpu / n * 1e6:.0f} us/row, "
              f"written {writer.written['predictions']}")


if __name__ == "__main__":
    main()
