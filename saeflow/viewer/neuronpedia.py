"""Export features of a finished run as Neuronpedia-style JSON, one file each.

``saeflow export-features --model M --layer L --out DIR`` reads one model ×
layer of a results folder and writes ``DIR/M/layer_L/<feature>.json`` and an
``index.json`` listing them (the ``layer_L`` folder is replaced as a whole).
Default features: every row of the labels table for M × L, then the ``--top``
most domain-specialised ones.

Field names follow Neuronpedia (github.com/hijohnnylin/neuronpedia): the
``Neuron``, ``Activation``, ``Explanation`` and ``ExplanationScore`` models of
``apps/webapp/prisma/schema.prisma``, nested as its ``GET /api/feature/{modelId}
/{layer}/{index}`` answer nests them (``apps/webapp/lib/db/neuron.ts``,
``getNeuronOptimized``: ``activations`` and ``explanations`` arrays inside the
feature). Meanings, as Neuronpedia's code uses them:

- ``layer`` is a source id, ``{layer}-{source set}`` (``Neuron.layer`` refers to
  ``Source.id``); ``index`` and ``layer`` are strings;
- ``maxValue``/``minValue`` are the max/min of ``values`` and
  ``maxValueTokenIndex`` the first index of the max; ``qualifyingTokenIndex`` is
  the token that put the context in the list, here the examples stage's ``peak``
  (``utils/neuronpedia-utils/.../convert-saedashboard-to-neuronpedia-export.py``);
  a top example's peak is its max, a quantile sample's need not be;
- ``frac_nonzero`` is the fraction of tested tokens with activation > 0, and
  ``freq_hist_data_bar_values`` the bin centres of the non-zero activations'
  histogram, parallel to ``freq_hist_data_bar_heights`` (token counts)
  (``apps/webapp/components/feature-stats.tsx``);
- ``ExplanationScore.jsonDetails`` is a string.

Here the tested tokens are the domain and general corpora together (the examples
come from both); ``maxActApprox`` is the exact max over them. Histogram bins are
the viewer's (``saeflow.viewer.data.feature_histograms``): ``hist_bins`` equal
bins over [0, hist_max], the last one closed. Our three label scorers become
``saeflow_{detection,fuzzing,embedding}_auroc`` scores whose ``jsonDetails``
holds balanced accuracy and the random- and shuffled-label baselines. Everything
that is not a Neuronpedia field sits under a ``saeflow`` key. Negative examples
are left out (their values are all zero).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from saeflow.labels.scoring import SCORERS
from saeflow.workflow.io import atomic_path, write_json

log = logging.getLogger(__name__)

CORPORA = ("domain", "general")
POSITIVE_KINDS = ("top", "quantile")
STAT_COLUMNS = ("mean_activation", "max_activation", "frac_active")
COMPARE_COLUMNS = (
    "status",
    "partner",
    "decoder_cosine",
    "activation_correlation",
    "delta_vs_base",
)


@dataclass(frozen=True)
class ExportConfig:
    """What to export from one run, and how to name it."""

    results: Path
    """The run's results folder."""
    model: str
    """Model key: "base" or "finetuned"."""
    layer: int
    """Layer L of results/*/{model}/layer_{L}."""
    out: Path
    """Folder to write; files go to out/{model}/layer_{L}/."""
    features: tuple[int, ...] | None = None
    """Feature ids; None: the labelled ones, then the top `top` by specialization."""
    top: int = 20
    """How many of the most specialised features the default selection adds."""
    model_id: str | None = None
    """Neuronpedia modelId; None: the model key."""
    source_set: str = "saeflow"
    """Second half of the Neuronpedia source id ``{layer}-{source_set}``."""

    @property
    def neuronpedia_model(self) -> str:
        """Neuronpedia's modelId."""
        return self.model_id or self.model

    @property
    def source_id(self) -> str:
        """Neuronpedia's layer field: the source id ``{layer}-{source_set}``."""
        return f"{self.layer}-{self.source_set}"

    def __post_init__(self) -> None:
        if self.top < 0:
            raise ValueError(f"top must be ≥ 0, got {self.top}")
        if self.layer < 0:
            raise ValueError(f"layer must be ≥ 0, got {self.layer}")


class Inputs(NamedTuple):
    """The files of one model × layer; optional ones are None when absent."""

    table: pd.DataFrame
    """Per-feature stats, indexed by feature id (viewer table or specialization)."""
    examples: Path
    """The examples stage's examples.parquet."""
    hist: np.ndarray | None
    """[2 corpora (domain, general), M, bins] counts, or None."""
    labels: pd.DataFrame | None
    """Labels table rows of this model × layer, indexed by feature, or None."""
    n_tokens: dict[str, int] | None
    """Tokens per corpus, or None."""
    embedder: str | None
    """The embedding scorer's model, from the labels summary."""
    missing: list[str]
    """What was absent and what that leaves out, one sentence each."""


def _read_inputs(cfg: ExportConfig) -> Inputs:
    r, m, layer = Path(cfg.results), cfg.model, cfg.layer
    where = f"{m}/layer_{layer}"
    viewer = r / "viewer" / where / "features.parquet"
    spec = r / "features" / where / "specialization.parquet"
    examples = r / "examples" / where / "examples.parquet"
    if not examples.is_file():
        raise FileNotFoundError(
            f"{examples} not found: the examples stage has not run for {where} "
            "(needs `examples: activate: true`)"
        )
    missing: list[str] = []
    if viewer.is_file():
        table = pd.read_parquet(viewer)
    elif spec.is_file():
        table = pd.read_parquet(spec)
        missing.append(f"{viewer} absent: no histogram or comparison fields")
    else:
        raise FileNotFoundError(f"no features table: neither {viewer} nor {spec}")
    table = table.set_index("feature", drop=False).sort_index()
    hist = None
    hist_path = viewer.with_name("histograms.npy")
    if hist_path.is_file() and "hist_max" in table:
        hist = np.load(hist_path)
        if hist.shape[:2] != (2, len(table)):
            raise ValueError(f"{hist_path}: shape {hist.shape}, {len(table)} features")
    elif viewer.is_file():
        missing.append(f"{hist_path} absent: histogram fields are empty")
    n_tokens: dict[str, int] | None = {}
    for c in CORPORA:
        p = r / "features" / where / f"{c}_stats.parquet"
        if p.is_file():
            n_tokens[c] = int(pd.read_parquet(p, columns=["n_tokens"]).iloc[0, 0])
        else:
            missing.append(f"{p} absent: frac_nonzero is null")
            n_tokens = None
            break
    labels, embedder = None, None
    label_csv = r / "labels" / "feature_labels_clean_domain.csv"
    if label_csv.is_file():
        df = pd.read_csv(label_csv)
        mine = df[(df["model"] == m) & (df["layer"] == layer)]
        labels = mine.drop_duplicates("feature").set_index("feature", drop=False)
        summary = label_csv.with_name("labels_summary_domain.json")
        if summary.is_file():
            embedder = json.loads(summary.read_text()).get("embedder")
    else:
        missing.append(f"{label_csv} absent (labels stage not run): no explanations")
    for note in missing:
        log.warning("%s", note)
    return Inputs(table, examples, hist, labels, n_tokens, embedder, missing)


def select_features(
    table: pd.DataFrame, labels: pd.DataFrame | None, top: int
) -> dict[int, list[str]]:
    """Default selection: labelled features, then the `top` most specialised.

    Returns feature id -> why it was chosen ("labelled", "top_specialization").
    """
    chosen: dict[int, list[str]] = {}
    for f in [] if labels is None else labels["feature"]:
        chosen.setdefault(int(f), []).append("labelled")
    order = table["specialization"].sort_values(ascending=False, kind="stable")
    for f in order.index[:top]:
        chosen.setdefault(int(f), []).append("top_specialization")
    return chosen


def _num(v: Any) -> Any:
    """A JSON value: NaN/NA → None, numpy → Python, float32 by its shortest repr."""
    if v is None or v is pd.NA or (isinstance(v, float | np.floating) and np.isnan(v)):
        return None
    if isinstance(v, bool | np.bool_ | str):
        return v if isinstance(v, str) else bool(v)
    if isinstance(v, np.float32):
        return float(str(v))
    if isinstance(v, np.integer | int):
        return int(v)
    return float(v)


def _floats32(values: Any) -> list[float]:
    return [float(str(v)) for v in np.asarray(values, np.float32)]


def activation_record(ex: Any) -> dict[str, Any]:
    """One example row (kind, corpus, doc_id, tokens, acts, peak…) as an Activation."""
    values = _floats32(ex.acts)
    top = int(np.argmax(values))  # first index of the max, as Neuronpedia's
    return {
        "tokens": [str(t) for t in ex.tokens],
        "values": values,
        "maxValue": values[top],
        "maxValueTokenIndex": top,
        "minValue": min(values),
        "qualifyingTokenIndex": int(ex.peak),
        "dataSource": ex.corpus,
        "dataIndex": str(ex.doc_id),
        "saeflow": {"kind": ex.kind, "split": ex.split, "quantile": _num(ex.quantile)},
    }


def explanations(row: pd.Series | None, embedder: str | None) -> list[dict]:
    """The label of one labels-table row as a one-item list (empty: no label)."""
    if row is None or not isinstance(row.get("label"), str) or not row["label"]:
        return []
    labeler = json.loads(row["labeler"]) if isinstance(row.get("labeler"), str) else {}
    judge = labeler.get("gguf_file") or labeler.get("model")
    scores = []
    for s in SCORERS:
        value = _num(row.get(f"{s}_auroc"))
        if value is None:
            continue
        details = {
            f"{prefix}{metric}": _num(row.get(f"{prefix}{s}_{metric}"))
            for prefix in ("", "random_label_", "shuffled_label_")
            for metric in ("auroc", "balanced_accuracy")
        }
        scores.append(
            {
                "explanationScoreTypeName": f"saeflow_{s}_auroc",
                "explanationScoreModelName": embedder if s == "embedding" else judge,
                "value": value,
                "jsonDetails": json.dumps(details),
            }
        )
    return [
        {
            "description": row["label"],
            "typeName": None,
            "explanationModelName": judge,
            "scores": scores,
            "saeflow": {"labeler": labeler, "mean_auroc": _num(row.get("score"))},
        }
    ]


def feature_json(
    cfg: ExportConfig, inp: Inputs, f: int, examples: pd.DataFrame, why: list[str]
) -> dict[str, Any]:
    """The Neuronpedia-style record of feature `f` (`examples`: its rows only)."""
    t = inp.table.loc[f]
    stats = {c: {k: _num(t.get(f"{k}_{c}")) for k in STAT_COLUMNS} for c in CORPORA}
    hist_max = max(stats[c]["max_activation"] or 0.0 for c in CORPORA)
    fracs = [stats[c]["frac_active"] for c in CORPORA]
    frac = None  # over both corpora: the examples come from both
    if inp.n_tokens and None not in fracs:
        active = sum(a * inp.n_tokens[c] for a, c in zip(fracs, CORPORA, strict=True))
        frac = active / sum(inp.n_tokens.values())
    heights, centres, hist = [], [], None
    if inp.hist is not None:
        counts = inp.hist[:, f]  # (2, bins)
        heights = [int(v) for v in counts.sum(0)]
        # The viewer's bins: equal over [0, hist_max]; Neuronpedia wants centres.
        edges = np.linspace(0.0, float(t["hist_max"]), counts.shape[1] + 1)
        centres = _floats32((edges[:-1] + edges[1:]) / 2)
        hist = {"edges": _floats32(edges)}
        hist.update({c: [int(v) for v in counts[i]] for i, c in enumerate(CORPORA)})
    kinds = examples[examples["kind"].isin(POSITIVE_KINDS)].assign(
        top=lambda d: d["kind"] == "top", q=lambda d: d["quantile"].fillna(0)
    )
    kinds = kinds.sort_values(["top", "q", "activation"], ascending=False)
    has_label = inp.labels is not None and f in inp.labels.index
    label = inp.labels.loc[f] if has_label else None
    return {
        "modelId": cfg.neuronpedia_model,
        "layer": cfg.source_id,
        "index": str(f),
        "maxActApprox": hist_max,
        "frac_nonzero": frac,
        "freq_hist_data_bar_heights": heights,
        "freq_hist_data_bar_values": centres,
        "activations": [activation_record(r) for r in kinds.itertuples()],
        "explanations": explanations(label, inp.embedder),
        "saeflow": {
            "model": cfg.model,
            "layer": cfg.layer,
            "feature": f,
            "selected_because": why,
            "specialization": _num(t.get("specialization")),
            "stats": stats,
            "n_tokens": inp.n_tokens,
            "comparison": {k: _num(t.get(k)) for k in COMPARE_COLUMNS}
            if "status" in t
            else None,
            "histogram": hist,
            "label": None
            if label is None
            else {
                k: _num(label.get(k))
                for k in ("label", "label_ok", "fail_reason", "source", "score")
            },
        },
    }


class ExportResult(NamedTuple):
    """What `export_features` wrote."""

    folder: Path
    """out/{model}/layer_{L}."""
    features: list[int]
    """Feature ids written, in index order."""
    missing: list[str]
    """Optional inputs that were absent, and what that left out."""


def export_features(cfg: ExportConfig) -> ExportResult:
    """Write one JSON per chosen feature and index.json into out/{model}/layer_{L}."""
    inp = _read_inputs(cfg)
    n = len(inp.table)
    if cfg.features is not None:
        bad = [f for f in cfg.features if f not in inp.table.index]
        if bad:
            raise ValueError(f"feature(s) {bad} not in {cfg.model} layer {cfg.layer}")
        chosen = {int(f): ["requested"] for f in cfg.features}
    else:
        chosen = select_features(inp.table, inp.labels, cfg.top)
    ids = list(chosen)
    ex = pq.read_table(inp.examples, filters=[("feature", "in", ids)]).to_pandas()
    by_feature = dict(tuple(ex.groupby("feature")))
    folder = Path(cfg.out) / cfg.model / f"layer_{cfg.layer}"
    entries = []
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for f in ids:
            part = by_feature.get(f, ex.iloc[:0])
            if part.empty:
                log.warning("feature %d has no examples in %s", f, inp.examples)
            rec = feature_json(cfg, inp, f, part, chosen[f])
            write_json(rec, tmp / f"{f}.json")
            entries.append(
                {
                    "index": rec["index"],
                    "file": f"{f}.json",
                    "label": rec["explanations"][0]["description"]
                    if rec["explanations"]
                    else None,
                    "selected_because": chosen[f],
                    "maxActApprox": rec["maxActApprox"],
                    "frac_nonzero": rec["frac_nonzero"],
                    "specialization": rec["saeflow"]["specialization"],
                    "n_activations": len(rec["activations"]),
                }
            )
        index = {
            "modelId": cfg.neuronpedia_model,
            "layer": cfg.source_id,
            "saeflow": {
                "results": str(Path(cfg.results).resolve()),
                "model": cfg.model,
                "layer": cfg.layer,
                "n_features_in_sae": n,
                "missing": inp.missing,
            },
            "features": entries,
        }
        write_json(index, tmp / "index.json")
    log.info("%s: %d feature JSON files and index.json", folder, len(ids))
    return ExportResult(folder, ids, inp.missing)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write Neuronpedia-style JSON per feature (activations with tokens, "
        "histogram, label and scores) from a finished run, for sharing: "
        "OUT/MODEL/layer_L/<feature>.json and index.json. Field names are "
        "Neuronpedia's feature API's; ours sit under a 'saeflow' key. Needs "
        "results/examples and a features table (viewer or features stage); "
        "without labels or viewer data those fields are left empty."
    )
    parser.add_argument("--results", default="results", help="the run's results")
    parser.add_argument("--model", required=True, choices=["base", "finetuned"])
    parser.add_argument("--layer", required=True, type=int, help="layer L")
    parser.add_argument(
        "--features",
        type=int,
        nargs="+",
        default=None,
        help="feature ids (default: those in the labels table for this model × "
        "layer, then the --top most domain-specialised)",
    )
    parser.add_argument(
        "--top", type=int, default=20, help="most specialised features to add"
    )
    parser.add_argument(
        "--out", required=True, help="folder; OUT/MODEL/layer_L is replaced"
    )
    parser.add_argument(
        "--model-id", default=None, help="Neuronpedia modelId (default: MODEL)"
    )
    parser.add_argument(
        "--source-set",
        default="saeflow",
        help="the layer field is the source id LAYER-SOURCE_SET",
    )


def main(args: argparse.Namespace) -> int:
    """Export; 1 with the reason when a required input is missing."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cfg = ExportConfig(
        results=Path(args.results),
        model=args.model,
        layer=args.layer,
        out=Path(args.out),
        features=tuple(args.features) if args.features else None,
        top=args.top,
        model_id=args.model_id,
        source_set=args.source_set,
    )
    try:
        export_features(cfg)
    except (FileNotFoundError, ValueError) as err:
        log.error("saeflow export-features: %s", err)
        return 1
    return 0
