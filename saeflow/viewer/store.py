"""Read-only, paged access to one run's viewer data (results/viewer/).

Every file path is built from values checked against the run's manifest (model
names, integer layers, feature ids in range), never from request text, and is
verified to lie inside the results folder. Tables are loaded once per model ×
layer and kept; pages are slices of cached sort orders, so an answer costs the
page, not the table.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from saeflow.viewer.config import MODEL_STATS

MAX_LIMIT = 200
MAX_EXAMPLES = {"top": 20, "quantile": 40, "negative_random": 5, "negative_similar": 5}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LIST_COLUMNS = [
    "feature",
    "label",
    "label_score",
    "pattern_label",
    "shown_label_source",
    "embedding_auroc",
    "pattern_label_embedding_auroc",
    "mean_activation_domain",
    "max_activation_domain",
    "frac_active_domain",
    "specialization",
    "delta_vs_base",
    "partner",
    "status",
]


class ApiError(Exception):
    """A request the viewer refuses: HTTP status and a message for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NoViewerData(RuntimeError):
    """A results folder without viewer data (build_viewer_data has not run)."""


def find_run(run: str | Path | None, cwd: str | Path = ".") -> Path:
    """The results folder to serve.

    Given `run`: that folder, or its `results/` subfolder (a workflow directory).
    Not given, the latest run: among ./results and ./*/results, the one whose
    viewer manifest was written last.
    """
    if run is not None:
        candidates = [Path(run), Path(run) / "results"]
    else:
        base = Path(cwd)
        candidates = [base / "results", *sorted(base.glob("*/results"))]
    built = [c for c in candidates if (c / "viewer" / "manifest.json").is_file()]
    if not built:
        where = run if run is not None else f"{Path(cwd).resolve()}/results"
        raise NoViewerData(
            f"no viewer data in {where} (looked for viewer/manifest.json): build it "
            "with `snakemake results/viewer/manifest.json`, or pass --run RESULTS_DIR"
        )
    return max(built, key=lambda c: (c / "viewer" / "manifest.json").stat().st_mtime)


def _json_value(v: Any) -> Any:
    """NaN / NA → None, numpy scalars → Python numbers."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: _json_value(v) for k, v in row.items()}
        for row in df.to_dict(orient="records")
    ]


def parse_int(value: str | None, name: str, default: int | None = None) -> int:
    """A non-negative integer query parameter, or ApiError 400 naming it."""
    if value is None or value == "":
        if default is None:
            raise ApiError(400, f"missing parameter {name!r}")
        return default
    if not re.fullmatch(r"\d{1,9}", value):
        raise ApiError(400, f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


class RunData:
    """One results folder's viewer data, read lazily and never written."""

    def __init__(self, results: str | Path) -> None:
        self.root = Path(results).resolve()
        manifest = self.root / "viewer" / "manifest.json"
        if not manifest.is_file():
            raise NoViewerData(f"no viewer data: {manifest} does not exist")
        self.manifest = json.loads(manifest.read_text())
        self.models: list[str] = list(self.manifest["models"])
        self.layers: list[int] = [int(v) for v in self.manifest["layers"]]
        bad = [m for m in self.models if not _SAFE_NAME.fullmatch(m)]
        if bad:
            raise NoViewerData(f"{manifest}: unsafe model name(s) {bad}")
        self.metrics: dict[str, str] = dict(self.manifest["metrics"])
        self.parts: dict[str, bool] = dict(self.manifest["parts"])

    # -- validation and paths ------------------------------------------------
    def _file(self, *parts: str) -> Path:
        path = self.root.joinpath("viewer", *parts).resolve()
        if not path.is_relative_to(self.root):
            raise ApiError(404, "not found")
        return path

    def check(self, model: str | None, layer: str | None) -> tuple[str, int]:
        """Validate model and layer against the manifest (400 / 404 otherwise)."""
        if not model:
            raise ApiError(400, "missing parameter 'model'")
        if model not in self.models:
            raise ApiError(404, f"unknown model {model[:40]!r}; known: {self.models}")
        n = parse_int(layer, "layer")
        if n not in self.layers:
            raise ApiError(404, f"unknown layer {n}; known: {self.layers}")
        return model, n

    def meta(self) -> dict[str, Any]:
        """What the page needs to draw its selectors and notes."""
        return {
            "run": self.root.name
            if self.root.name != "results"
            else f"{self.root.parent.name}/results",
            **{k: self.manifest[k] for k in ("models", "layers", "metrics", "parts")},
            "notes": self.manifest.get("notes", {}),
            "saes": self.manifest.get("saes", {}),
            "comparison": self.manifest.get("comparison", {}),
            "hist_bins": self.manifest.get("hist_bins"),
        }

    # -- tables --------------------------------------------------------------
    @functools.lru_cache(maxsize=64)  # noqa: B019 - one RunData per server
    def table(self, model: str, layer: int) -> pd.DataFrame:
        """The feature table of one model × layer, indexed by feature id."""
        path = self._file(model, f"layer_{layer}", "features.parquet")
        return pd.read_parquet(path).set_index("feature", drop=False)

    @functools.lru_cache(maxsize=256)  # noqa: B019
    def _order(self, model: str, layer: int, metric: str, desc: bool) -> np.ndarray:
        t = self.table(model, layer)
        # A metric of another kind of table (the crosscoder's relative norm) ranks
        # nothing here: every value missing, the page in feature order.
        values = (
            t[metric].to_numpy(dtype=float) if metric in t else np.full(len(t), np.nan)
        )
        key = np.where(np.isnan(values), np.inf, -values if desc else values)
        return np.argsort(key, kind="stable")

    def features(
        self,
        model: str | None,
        layer: str | None,
        metric: str | None,
        limit: str | None,
        offset: str | None,
        order: str | None = None,
    ) -> dict[str, Any]:
        """One page of features ranked by `metric` (highest first unless asc)."""
        model, n = self.check(model, layer)
        metric = metric or "specialization"
        if metric not in self.metrics:
            raise ApiError(
                400, f"unknown metric {metric[:40]!r}; known: {list(self.metrics)}"
            )
        if order not in (None, "", "asc", "desc"):
            raise ApiError(400, "order must be asc or desc")
        lim = min(parse_int(limit, "limit", 50), MAX_LIMIT)
        off = parse_int(offset, "offset", 0)
        t = self.table(model, n)
        rows = self._order(model, n, metric, order != "asc")[off : off + lim]
        page = t.iloc[rows][[c for c in LIST_COLUMNS if c in t]]
        return {
            "model": model,
            "layer": n,
            "metric": metric,
            "total": len(t),
            "offset": off,
            "limit": lim,
            "items": _records(page),
        }

    def feature_info(
        self, model: str | None, layer: str | None, fid: str | None
    ) -> dict[str, Any]:
        """Everything about one feature: stats, histogram, examples, partner."""
        model, n = self.check(model, layer)
        i = parse_int(fid, "id")
        t = self.table(model, n)
        if i >= len(t):
            last = len(t) - 1
            raise ApiError(404, f"no feature {i} in {model} layer {n} (0..{last})")
        row = {k: _json_value(v) for k, v in t.iloc[i].to_dict().items()}
        hist = np.load(self._file(model, f"layer_{n}", "histograms.npy"), mmap_mode="r")
        info = {
            "model": model,
            "layer": n,
            "id": i,
            "n_features": len(t),
            "stats": row,
            "histogram": {
                "max": row["hist_max"],
                "domain": hist[0, i].tolist(),
                "general": hist[1, i].tolist(),
            },
            "partner": self._partner(model, n, row),
            "models": self._models_of_latent(n, row) if model == "crosscoder" else None,
            "examples": self._examples(model, n, i),
            "parts": self.parts,
        }
        return info

    def _partner(self, model: str, layer: int, row: dict) -> dict | None:
        if not self.parts.get("compare") or row.get("partner", -1) < 0:
            return None
        other = "base" if model == "finetuned" else "finetuned"
        if other not in self.models:
            return None
        p = self.table(other, layer).iloc[int(row["partner"])]
        return {
            "model": other,
            "layer": layer,
            "id": int(row["partner"]),
            "label": _json_value(p["label"]),
            "decoder_cosine": row["decoder_cosine"],
            "activation_correlation": row["activation_correlation"],
            "status": row["status"],
        }

    def _models_of_latent(self, layer: int, row: dict) -> list[dict[str, Any]]:
        """A crosscoder latent in each model, side by side: its decoder norm there
        and that model's nearest SAE feature (id, cosine, label, activations)."""
        out = []
        for model in ("base", "finetuned"):
            fid = row.get(f"{model}_feature")
            label = None
            if model in self.models and fid is not None and fid >= 0:
                label = _json_value(self.table(model, layer).iloc[int(fid)]["label"])
            out.append(
                {
                    "model": model,
                    "decoder_norm": row.get(f"norm_{model}"),
                    "feature": fid,
                    "cosine": row.get(f"{model}_cosine"),
                    "label": label,
                    **{c: row.get(f"{model}_{c}") for c in MODEL_STATS},
                }
            )
        return out

    def _examples(self, model: str, layer: int, fid: int) -> dict[str, Any] | None:
        path = self._file(model, f"layer_{layer}", "examples.parquet")
        if not self.parts.get("examples") or not path.is_file():
            return None
        df = pq.read_table(path, filters=[("feature", "=", fid)]).to_pandas()
        out: dict[str, Any] = {}
        for kind, limit in MAX_EXAMPLES.items():
            part = df[df["kind"] == kind]
            if kind == "quantile":
                part = part.sort_values("quantile", kind="stable")
            else:
                part = part.sort_values("activation", ascending=False, kind="stable")
            out[kind] = [
                {
                    "doc_id": r.doc_id,
                    "corpus": r.corpus,
                    "tokens": list(r.tokens),
                    "acts": [round(float(a), 3) for a in r.acts],
                    "peak": int(r.peak),
                    "activation": round(float(r.activation), 4),
                    "quantile": _json_value(r.quantile),
                }
                for r in part.head(limit).itertuples()
            ]
        return out

    # -- headlines -----------------------------------------------------------
    @functools.cached_property
    def _headlines(self) -> pd.DataFrame:
        return pd.read_parquet(self._file("headlines.parquet"))

    @functools.lru_cache(maxsize=16)  # noqa: B019
    def _headline_features(self, layer: int) -> pd.DataFrame:
        path = self._file("finetuned", f"layer_{layer}", "headline_features.parquet")
        return pd.read_parquet(path).set_index("doc_id")

    def headlines(
        self,
        layer: str | None,
        limit: str | None,
        offset: str | None,
        only: str | None = None,
        query: str | None = None,
    ) -> dict[str, Any]:
        """One page of headlines with prediction, truth and top feature chips."""
        n = self.check("finetuned", layer or str(self.layers[0]))[1]
        lim = min(parse_int(limit, "limit", 50), MAX_LIMIT)
        off = parse_int(offset, "offset", 0)
        if only not in (None, "", "all", "wrong", "right"):
            raise ApiError(400, "only must be all, wrong or right")
        t = self._headlines
        if only == "wrong":
            t = t[t["correct"] == False]  # noqa: E712 - null (no label) is neither
        elif only == "right":
            t = t[t["correct"] == True]  # noqa: E712
        if query:
            t = t[t["text"].str.contains(query[:200], case=False, regex=False)]
        page = t.iloc[off : off + lim]
        feats = self._headline_features(n)
        labels = self.table("finetuned", n)["label"]
        items = []
        for rec in _records(page):
            chips = []
            if rec["doc_id"] in feats.index:
                hit = feats.loc[rec["doc_id"]]
                # Older runs have no peak tokens: the chip then says "unlabelled".
                tokens = hit["tokens"] if "tokens" in hit else None
                if tokens is None or len(tokens) != len(hit["features"]):
                    tokens = [None] * len(hit["features"])
                for f, a, tok in zip(hit["features"], hit["acts"], tokens, strict=True):
                    chips.append(
                        {
                            "id": int(f),
                            "act": round(float(a), 4),
                            "label": _json_value(labels[f]),
                            "token": tok,
                        }
                    )
            items.append({**rec, "features": chips})
        scored = self._headlines["correct"].dropna()
        return {
            "layer": n,
            "total": len(t),
            "offset": off,
            "limit": lim,
            "accuracy": float(scored.astype(bool).mean()) if len(scored) else None,
            "n_all": len(self._headlines),
            "items": items,
        }
