"""How fast does the local labeler judge and explain on the CPU? Before and after
the prefix key/value cache and int8 dynamic quantisation, in one process.

Builds the yes/no questions the labels stage asks (detection and fuzzing, per
label) for `--features` features of a finished default run, then times
`TransformersLabeler.judge` on them with
  * `padded`: one left-padded batch per feature (the stage before issue #20);
  * `prefix`: the shared prefix of each label's questions run once, its
    key/value cache reused (`prefix_cache: true`);
  * `prefix+int8`: the same with `quantize: int8`;
and the explanation (beam search) with fp32 and int8 weights. Prints question
tokens per second (prompt tokens of all questions / seconds: what an uncached
model would have to process), the median of `--repeats` runs, and the largest
P(yes) difference of each variant from `padded`.

    python bench/label_speed.py --root results --features 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from saeflow.examples.collect import load_examples
from saeflow.labels.config import LabelsConfig, load_templates
from saeflow.labels.labelers import TransformersLabeler
from saeflow.labels.prompts import render_prompt
from saeflow.labels.scoring import detection_task, fuzzing_task

ROOT = Path(__file__).resolve().parents[1]


def questions(root: Path, n: int, cfg: LabelsConfig, templates: dict) -> list:
    """Per feature, the detection and fuzzing questions for its label, in the
    stage's order (label by label, task by task)."""
    labels = pd.read_csv(root / "labels" / "feature_labels_clean_domain.csv")
    labels = labels[labels["label"].notna()].head(n)
    rng = np.random.default_rng(0)
    out = []
    for r in labels.itertuples():
        path = root / f"examples/{r.model}/layer_{r.layer}/examples.parquet"
        ex = load_examples(path, [int(r.feature)])
        prompts = []
        for name, task in (
            ("detection", detection_task(ex, cfg.n_detect, rng)),
            ("fuzzing", fuzzing_task(ex, cfg.n_fuzz, rng)),
        ):
            prompts += [
                render_prompt(templates[name], label=r.label, snippet=s)
                for s in task.snippets
            ]
        out.append(prompts)
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    runs, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("results"))
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", type=Path, default=None, help="converted labeler folder")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = LabelsConfig.from_dict(
        yaml.safe_load((ROOT / "config.yaml").read_text())["labels"], "labels: "
    )
    templates = load_templates(ROOT / cfg.prompts)
    feats = questions(args.root, args.features, cfg, templates)
    folder = args.model or args.root / "labels" / "labeler_model"
    base = dataclasses.replace(cfg.labeler, device="cpu")
    variants = {
        "padded": dataclasses.replace(base, prefix_cache=False),
        "prefix": dataclasses.replace(base, prefix_cache=True),
        "prefix+int8": dataclasses.replace(base, prefix_cache=True, quantize="int8"),
    }
    results, reference = {}, None
    explain = [[{"role": "user", "content": "Name the topic: dividend, payout"}]]
    for name, lcfg in variants.items():
        lab = TransformersLabeler(lcfg, prepared=folder)
        lab._load()
        n_tokens = sum(len(lab._ids(q)) for f in feats for q in f)
        sec, got = timed(lambda lab=lab: [lab.judge(f) for f in feats], args.repeats)
        p_yes = np.array([j.p_yes for f in got for j in f])
        reference = p_yes if reference is None else reference
        gen_sec, (c,) = timed(lambda lab=lab: lab.complete(explain), args.repeats)
        results[name] = {
            "questions": int(len(p_yes)),
            "question_tokens": int(n_tokens),
            "judge_seconds": round(sec, 3),
            "question_tokens_per_s": round(n_tokens / sec, 1),
            "max_abs_p_yes_diff_vs_padded": float(np.abs(p_yes - reference).max()),
            "explain_seconds": round(gen_sec, 3),
            "explain_new_tokens_per_s": round(c.completion_tokens / gen_sec, 2),
            "explain_answer": c.text,
        }
        print(name, json.dumps(results[name]), flush=True)
    print(json.dumps({"threads": args.threads, **results}, indent=1))


if __name__ == "__main__":
    main()
