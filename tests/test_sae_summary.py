"""The SAE summary joins each SAE's training metrics with its spliced-in result,
one row per model × layer, and leaves the splice columns out when it did not run."""

import json

import pandas as pd
from pytest import approx

from saeflow.sae.summary import make_sae_summary


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def metrics(fvu):
    return {
        "eval": {"fvu": fvu, "l0": 4.0, "never_fired_fraction": 0.1},
        "dead_fraction": 0.0,
        "n_latents": 64,
        "config": {"k": 4},
    }


def spliced(kind, sae_loss):
    metric = "accuracy" if kind == "classifier" else "cosine_to_clean"
    losses = {"clean": 0.2, "sae": sae_loss, "zero": 1.2, "mean": 0.9}
    return {
        "kind": kind,
        "texts": "sae_holdout",
        "conditions": {
            name: {
                "loss": loss,
                metric: 1 - loss,
                **({"kl_from_clean": loss - 0.2} if kind == "classifier" else {}),
                **(
                    {"fraction_recovered": (1.2 - loss) / 1.0}
                    if name in ("sae", "mean")
                    else {}
                ),
            }
            for name, loss in losses.items()
        },
    }


def test_summary_rows_join_training_and_splice(tmp_path):
    m = {
        ("base", 1): write(tmp_path / "b.json", metrics(0.3)),
        ("finetuned", 1): write(tmp_path / "f.json", metrics(0.2)),
    }
    s = {
        ("base", 1): write(tmp_path / "bs.json", spliced("encoder", 0.3)),
        ("finetuned", 1): write(tmp_path / "fs.json", spliced("classifier", 0.7)),
    }
    into = {1: write(tmp_path / "into.json", spliced("classifier", 0.45))}
    outs = {k: tmp_path / f"out.{k}" for k in ("table", "json", "figure")}
    table = make_sae_summary(m, s, into, outs).set_index("model")
    assert table.loc["finetuned", "spliced_recovered"] == approx(0.5)
    assert table.loc["finetuned", "splice_metric"] == "fraction of loss recovered"
    assert table.loc["base", "spliced_recovered"] == approx(0.9)
    assert table.loc["base", "cosine_to_clean_sae"] == approx(0.7)
    assert table.loc["base", "in_finetuned_recovered"] == approx(0.75)
    assert pd.isna(table.loc["finetuned", "in_finetuned_recovered"])
    assert pd.isna(table.loc["base", "accuracy_sae"])
    on_disk = json.loads(outs["json"].read_text())
    assert on_disk["finetuned/layer_1"]["accuracy_zero"] == approx(1 - 1.2)
    assert outs["figure"].read_bytes()[:4] == b"\x89PNG"


def test_summary_without_splice_has_training_columns_only(tmp_path):
    m = {("base", 2): write(tmp_path / "b.json", metrics(0.3))}
    outs = {k: tmp_path / f"out.{k}" for k in ("table", "json", "figure")}
    table = make_sae_summary(m, {}, {}, outs)
    assert table.loc[0, "fvu"] == 0.3 and table.loc[0, "source"] == "trained"
    assert "spliced_recovered" not in table
