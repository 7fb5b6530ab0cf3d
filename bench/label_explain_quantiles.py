"""Would labels written from examples across the activation range beat the
shuffled label on the embedding scorer? (Issue #20; delphi shows its explainer
activation-quantile samples as well as top examples.)

The examples stage gives the explainer only the top examples (split=explain);
its quantile samples are all held out (split=score). This bench copies a
finished run's examples tables into `--work`, moves the middle sample of each
activation-quantile bin (5 per feature) from split=score to split=explain_q,
and runs `bench/label_quality.py` on that copy with the prompt showing

* `top`: the spread top examples, as the stage does (the reference: the same
  held-out snippets, 10 quantile samples per feature instead of 15);
* `quantiles`: the 5 moved quantile samples, strongest first, instead;
* `mixed`: the spread top examples, then the 5 quantile samples.

Every variant is scored on the same held-out snippets; the words it fires on,
the words around them and the near-misses stay those of the top examples.
Answers are cached under `--work`, never in the run's own cache.

    python bench/label_explain_quantiles.py --root results --variant mixed
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def make_work_root(src: Path, work: Path, layers: list[int]) -> None:
    """`work`: links to everything of `src` but the examples tables (copied,
    one quantile sample per bin moved to split=explain_q) and the answers."""
    work.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name not in ("examples", "labels") and not (work / p.name).exists():
            (work / p.name).symlink_to(p.resolve())
    labels = work / "labels"
    (labels / "cache").mkdir(parents=True, exist_ok=True)
    for name in ("labeler_model", "cache/models"):
        if (src / "labels" / name).exists() and not (labels / name).exists():
            (labels / name).symlink_to((src / "labels" / name).resolve())
    if not (labels / "cache" / "answers").exists():
        shutil.copytree(src / "labels/cache/answers", labels / "cache" / "answers")
    for layer in layers:
        rel = f"examples/finetuned/layer_{layer}/examples.parquet"
        ex = pd.read_parquet(src / rel)
        q = ex[(ex["kind"] == "quantile") & (ex["split"] == "score")]
        q = q.sort_values(["feature", "quantile", "activation"])
        by_bin = q.groupby(["feature", "quantile"])
        middle = q.index[
            by_bin.cumcount() == by_bin["activation"].transform("size") // 2
        ]
        ex.loc[middle, "split"] = "explain_q"
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        ex.to_parquet(work / rel)


def patch_prompt(variant: str) -> None:
    """Make the labels stage's explanation prompt show `variant`'s examples."""
    import saeflow.labels.labeling as labeling
    from saeflow.labels.prompts import explain_input

    def shown(examples, n, tokens, n_contrast=2, context=(), texts=None, **kw):
        base = explain_input(
            examples[examples["split"] != "explain_q"],
            n,
            tokens,
            n_contrast,
            context,
            texts=texts,
            **kw,
        )
        q = examples[examples["split"] == "explain_q"].assign(split="explain")
        qs = explain_input(q, len(q), tokens, 0, context, texts=texts).snippets
        snippets = {"top": base.snippets, "quantiles": qs}.get(
            variant, base.snippets + qs
        )
        return base._replace(snippets=snippets)

    labeling.explain_input = shown


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("results"))
    p.add_argument("--work", type=Path, default=ROOT / "bench/out/explain_q/root")
    p.add_argument("--variant", choices=["top", "quantiles", "mixed"], default="mixed")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    make_work_root(args.root, args.work, [2, 4, 6])
    patch_prompt(args.variant)
    out = args.out or args.work.parent / args.variant
    sys.path.insert(0, str(ROOT / "bench"))
    import label_quality

    sys.argv = [
        "label_quality.py",
        *("--root", str(args.work), "--out", str(out)),
        *("--top-n", "7", "--compare-n", "1", "--num-beams", "1"),
        *("--scorers", "embedding"),
    ]
    label_quality.main()


if __name__ == "__main__":
    main()
