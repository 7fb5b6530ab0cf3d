"""HDF5 writing against the model forward while caching a BERT-base-wide model.

Issue #21 item 5: at D = 768 writing the activation caches must cost at most 10 %
of the forward time. This runs the workflow's own `cache_activations` on a random
BERT-base (`bench/scale.py`'s `make_models`: `BertConfig()`, the MiniLM
tokenizer) over synthetic headlines, all 12 layers cached as fp16 in chunks of
4,096 rows, and prints per round the forward seconds and the seconds the forward
loop waited for the writer thread (`CacheReport.write_s`), then the median share.
On a GPU the forward is two orders of magnitude faster than on 2 CPU cores while
the writing is not, so the share is worth reading per device:

    python bench/activation_write.py                          # CPU, 4,096 tokens
    python bench/activation_write.py --device cuda --tokens 200000 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import make_models, write_share  # noqa: E402

from saeflow.corpus.synthetic import generate_headlines  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward")
    parser.add_argument("--work", type=Path, default=Path("/tmp/saeflow_write"))
    args = parser.parse_args()
    models = make_models(args.work / "models")
    corpus = args.work / "headlines.parquet"
    # Synthetic headlines run ~16 tokens each; twice that many texts never run out.
    generate_headlines(
        max(1000, args.tokens // 8), "2020-01-01", "2024-12-31", ["MSFT"], 0.0, 0
    )[["doc_id", "text"]].to_parquet(corpus)
    shares = []
    for _ in range(args.rounds):
        share, line = write_share(
            models[0],
            corpus,
            args.tokens,
            args.work / "w",
            args.device,
            args.batch_size,
        )
        print(line, flush=True)
        shares.append(share)
    print(f"median share over {args.rounds} rounds: {statistics.median(shares):.1f} %")


if __name__ == "__main__":
    main()
