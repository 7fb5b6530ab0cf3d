"""HTTP labeling throughput vs the `concurrency` setting, against the tests' local
OpenAI-compatible server answering each request after a fixed delay (a stand-in
for a real endpoint's latency). Prints prompts/s per setting (median of repeats)
and the ratio to concurrency 1.

    .venv/bin/python bench/label_http.py [--delay 0.1] [--prompts 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from labels_server import ChatServer  # noqa: E402

from saeflow.labels.config import LabelerConfig  # noqa: E402
from saeflow.labels.labelers import HTTPLabeler  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delay", type=float, default=0.1, help="server seconds/request")
    p.add_argument("--prompts", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = p.parse_args()
    prompts = [
        [{"role": "user", "content": f"prompt {i}"}] for i in range(args.prompts)
    ]
    with ChatServer(delay_s=args.delay) as server:
        base = None
        print(
            f"{args.prompts} prompts, server delay {args.delay:.3f} s, median of "
            f"{args.repeats}"
        )
        print(f"{'concurrency':>11} {'prompts/s':>10} {'ratio':>6}")
        for c in args.concurrency:
            cfg = LabelerConfig(
                kind="http", model="m", base_url=server.url("delay"), concurrency=c
            )
            labeler = HTTPLabeler(cfg)
            rates = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = labeler.complete(prompts)
                rates.append(len(prompts) / (time.perf_counter() - t0))
                assert all(o.error is None for o in out), out[0].error
            rate = statistics.median(rates)
            base = base or rate
            print(f"{c:>11} {rate:>10.1f} {rate / base:>6.2f}")


if __name__ == "__main__":
    main()
