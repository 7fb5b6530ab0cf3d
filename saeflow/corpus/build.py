"""Build one text corpus from its config, clean it, and save it.

`build_corpus` dispatches on `CorpusConfig.source`: generated financial
headlines (`corpus_synthetic`), the general-domain text gensim ships
(`corpus_general`), a Hugging Face dataset, a local CSV / TSV / Parquet /
JSONL table, or local plain text (a .txt file, or a folder of .txt files). Every
corpus leaves here with exactly CORPUS_COLUMNS, unique string
doc ids, and rows with empty text or undecodable bytes skipped and counted in a
`CorpusReport`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from saeflow.corpus.general import finance_lee_passages, general_corpus
from saeflow.corpus.synthetic import generate_headlines
from saeflow.workflow.config import CorpusConfig
from saeflow.workflow.io import write_parquet

logger = logging.getLogger(__name__)

CORPUS_COLUMNS = [
    "doc_id",
    "text",
    "label",
    "date",
    "ticker",
    "event",
    "source",
    "synthetic",
]
_STRING_COLUMNS = ("doc_id", "text", "label", "ticker", "event")
# Bytes that are not UTF-8 are read with errors="surrogateescape" and so show up
# as lone surrogates, which valid text never contains.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_ARROW_TEXT_TYPES = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())
_HF_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")

PathLike = str | os.PathLike[str]


class CorpusReport(NamedTuple):
    """What happened to the rows of one corpus."""

    n_read: int
    """Rows read from the source, before any were skipped."""
    n_empty: int
    """Rows skipped because their text was missing, empty or whitespace."""
    n_invalid_utf8: int
    """Rows skipped because a text, id, label or ticker held bytes not UTF-8."""
    n_duplicate_ids: int
    """Rows skipped because an earlier row had the same doc id."""
    n_kept: int
    """Rows in the returned corpus (after `max_docs` where build_corpus applies it)."""


def build_corpus(cfg: CorpusConfig, seed: int) -> tuple[pd.DataFrame, CorpusReport]:
    """Read or generate the corpus `cfg` describes; returns (corpus, report).

    `seed` drives the synthetic generator and the `max_docs` subsample.
    """
    if cfg.source == "local" and is_plain_text(cfg.path):
        df, report = load_local_text(cfg.path, cfg.text_format)
    elif cfg.source == "local":
        df, report = load_local_table(cfg.path, **_column_args(cfg))
    elif cfg.source == "huggingface":
        df, report = load_hf_dataset(
            cfg.dataset, cfg.config_name, cfg.split, **_column_args(cfg)
        )
    else:
        df, report = _clean(_generate(cfg, seed), where=cfg.source)
    df = _subsample(df, cfg.max_docs, seed)
    report = report._replace(n_kept=len(df))
    logger.info("corpus (%s): %s", cfg.source, report)
    return df, report


def _column_args(cfg: CorpusConfig) -> dict[str, str | None]:
    names = ("text", "label", "date", "ticker", "id")
    return {f"{n}_column": getattr(cfg, f"{n}_column") for n in names}


def _generate(cfg: CorpusConfig, seed: int) -> pd.DataFrame:
    if cfg.source == "gensim":
        return general_corpus(cfg.parts, cfg.passage_words, cfg.exclude_finance)
    df = generate_headlines(
        cfg.n_docs, cfg.start_date, cfg.end_date, cfg.tickers, cfg.label_noise, seed
    )
    if cfg.mix_real_finance:
        real = finance_lee_passages(cfg.passage_words).assign(synthetic=False)
        logger.info("mixing in %d real finance-themed Lee passages", len(real))
        df = pd.concat([df, real], ignore_index=True)
    return df


def _subsample(df: pd.DataFrame, max_docs: int | None, seed: int) -> pd.DataFrame:
    if max_docs is None or len(df) <= max_docs:
        return df
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(df), size=max_docs, replace=False))
    return df.iloc[keep].reset_index(drop=True)


def load_local_table(
    path: PathLike,
    text_column: str,
    label_column: str | None = None,
    date_column: str | None = None,
    ticker_column: str | None = None,
    id_column: str | None = None,
) -> tuple[pd.DataFrame, CorpusReport]:
    """Read a CSV, TSV, Parquet or JSON-lines table (by extension) as a corpus.

    Doc ids come from `id_column`, else `<file stem>-<row#>` (row# counts all
    rows read, so ids survive skipped rows). `source` is the file name.
    """
    path = Path(path)
    raw = _read_table(path)
    columns = {"text": text_column, "label": label_column, "date": date_column}
    columns |= {"ticker": ticker_column, "doc_id": id_column}
    frame = _select(raw, columns, where=str(path), stem=path.stem, source=path.name)
    return _clean(frame, where=str(path))


def _read_table(path: Path) -> pd.DataFrame:
    """Read any supported table; string cells keep bad bytes as surrogates."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(
            path,
            sep="\t" if suffix == ".tsv" else ",",
            dtype=object,  # pandas' str dtype would refuse the surrogates
            encoding="utf-8-sig",
            encoding_errors="surrogateescape",
            keep_default_na=False,
            na_values=[""],
        )
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in (".jsonl", ".json"):
        return _read_json(path)
    raise ValueError(
        f"{path}: unsupported table extension {suffix!r}; "
        "use .csv, .tsv, .parquet, .jsonl, .json, or .txt for plain text"
    )


def _read_parquet(path: Path) -> pd.DataFrame:
    table = pq.read_table(path)
    columns: dict[str, Any] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if col.type in _ARROW_TEXT_TYPES:
            # Via binary so invalid UTF-8 is counted, not an Arrow error.
            raw = col.cast(pa.large_binary()).to_pylist()
            decoded = [
                None if b is None else b.decode("utf-8", "surrogateescape") for b in raw
            ]
            columns[name] = pd.Series(decoded, dtype=object)
        else:
            columns[name] = col.to_pandas()
    return pd.DataFrame(columns)


def _read_json(path: Path) -> pd.DataFrame:
    """JSON lines (one object per line), or a .json file holding one array."""
    with open(path, "rb") as f:
        data = f.read()
    if path.suffix.lower() == ".json" and data.lstrip()[:1] == b"[":
        records = json.loads(data.decode("utf-8", "surrogateescape"))
        return pd.DataFrame(records, dtype=object)
    records = []
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8", "surrogateescape"))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: line {lineno} is not valid JSON: {err.msg}"
            ) from err
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {lineno} is not a JSON object")
        records.append(record)
    return pd.DataFrame(records, dtype=object)


def is_plain_text(path: PathLike) -> bool:
    """Whether a local corpus path is plain text: a .txt file or a folder."""
    return Path(path).is_dir() or Path(path).suffix.lower() == ".txt"


def load_local_text(
    path: PathLike, text_format: Literal["lines", "paragraphs"] = "lines"
) -> tuple[pd.DataFrame, CorpusReport]:
    """Read plain text as a corpus: a .txt file split by `text_format` (one
    document per line, or per blank-line-separated paragraph), or a folder whose
    .txt files (searched recursively, in path order) are one document each.

    Doc ids are `<file stem>-<n>` (n counts every line or paragraph, so ids
    survive skipped ones) or, in a folder, each file's relative path without
    .txt. Undecodable bytes skip their document and are counted, as in tables.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        # A file's surrounding blank lines and final newline are no part of it.
        texts = [_read_text(f).strip() for f in files]
        ids = [f.relative_to(path).with_suffix("").as_posix() for f in files]
    else:
        texts = _split_text(_read_text(path), text_format)
        ids = [f"{path.stem}-{i}" for i in range(len(texts))]
    raw = pd.DataFrame({"text": texts, "doc_id": ids}, dtype=object)
    columns = {"text": "text", "label": None, "date": None}
    columns |= {"ticker": None, "doc_id": "doc_id"}
    frame = _select(raw, columns, where=str(path), stem=path.stem, source=path.name)
    return _clean(frame, where=str(path))


def _read_text(path: Path) -> str:
    """A text file's content; bad bytes become lone surrogates (counted later)."""
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    # Universal newlines, but not str.splitlines', which also splits on form
    # feeds and U+2028 inside a document.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_text(text: str, text_format: Literal["lines", "paragraphs"]) -> list[str]:
    if text_format == "lines":
        return text.removesuffix("\n").split("\n") if text else []
    # Paragraphs: split on runs of blank (or whitespace-only) lines.
    return [p.strip() for p in re.split(r"\n[ \t]*\n\s*", text.strip()) if p.strip()]


def load_hf_dataset(
    dataset: str,
    config_name: str | None = None,
    split: str = "train",
    text_column: str = "text",
    label_column: str | None = None,
    date_column: str | None = None,
    ticker_column: str | None = None,
    id_column: str | None = None,
) -> tuple[pd.DataFrame, CorpusReport]:
    """Read one split of a Hugging Face dataset as a corpus.

    `dataset` is a hub id (needs the hub, or its cache), a folder written by
    `save_to_disk`, or a folder of data files. Integer class labels become their
    names. Doc ids come from `id_column`, else `<dataset name>-<row#>`.
    """
    ds = _open_hf(dataset, config_name, split)
    raw = ds.to_pandas()
    feature = ds.features.get(label_column) if label_column else None
    if feature is not None and hasattr(feature, "int2str"):  # a ClassLabel
        raw[label_column] = [
            feature.int2str(int(v)) if pd.notna(v) and v >= 0 else None
            for v in raw[label_column]
        ]
    where = f"Hugging Face dataset {dataset!r} (split {split!r})"
    name = Path(dataset.rstrip("/")).name
    columns = {"text": text_column, "label": label_column, "date": date_column}
    columns |= {"ticker": ticker_column, "doc_id": id_column}
    frame = _select(raw, columns, where=where, stem=name, source=dataset)
    return _clean(frame, where=where)


def _open_hf(dataset: str, config_name: str | None, split: str) -> Any:
    import datasets  # slow to import; only this source needs it

    local = Path(dataset)
    if local.is_dir() and any((local / m).exists() for m in _HF_SAVED_MARKERS):
        ds = datasets.load_from_disk(str(local))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{dataset}: no split {split!r}; has {list(ds)}")
            ds = ds[split]
        return ds
    try:
        return datasets.load_dataset(dataset, config_name, split=split)
    except Exception as err:  # hub failures differ by version and network state
        if local.exists():
            raise
        raise RuntimeError(
            f"could not load Hugging Face dataset {dataset!r} (config "
            f"{config_name!r}, split {split!r}): {err}. This machine may be "
            "offline: download the dataset where the hub is reachable, save it "
            "with save_to_disk, and set corpora.*.dataset to that folder."
        ) from err


def _select(
    raw: pd.DataFrame,
    wanted: dict[str, str | None],
    where: str,
    stem: str,
    source: str,
) -> pd.DataFrame:
    """Take the `wanted` {corpus column: user column} cells, as object dtype.

    Missing ids (no id column, or a null id) become `<stem>-<row#>`.
    """
    missing = [
        f"{role if role != 'doc_id' else 'id'}_column={col!r}"
        for role, col in wanted.items()
        if col is not None and col not in raw.columns
    ]
    if missing:
        raise ValueError(
            f"{where}: no column for {', '.join(missing)}; "
            f"columns found: {[str(c) for c in raw.columns]}"
        )
    # dtype=object throughout: pandas' own string dtype refuses surrogates.
    cells = {
        role: raw[col].to_numpy(dtype=object) for role, col in wanted.items() if col
    }
    frame = pd.DataFrame(cells, dtype=object)
    fallback = pd.Series([f"{stem}-{i}" for i in range(len(raw))], dtype=object)
    ids = _strings(frame["doc_id"]) if wanted["doc_id"] else fallback
    frame["doc_id"] = ids.where(ids.notna(), fallback)
    frame["source"] = source
    return frame


def _strings(values: pd.Series) -> pd.Series:
    """Cells as str (object dtype), nulls kept; 3.0 read as a float id is "3"."""

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return v if isinstance(v, str) else str(v)

    return pd.Series([one(v) for v in values], index=values.index, dtype=object)


def _clean(frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, CorpusReport]:
    """Skip rows with bad bytes, empty text or a repeated id; fix column dtypes."""
    strings = {c: _strings(frame[c]) for c in _STRING_COLUMNS if c in frame}
    invalid = pd.Series(False, index=frame.index)
    for col in strings.values():
        invalid |= col.map(lambda v: bool(v) and bool(_LONE_SURROGATE.search(v)))
    empty = ~invalid & ~strings["text"].map(lambda v: bool(v and v.strip()))
    ok = ~invalid & ~empty
    # Rows already skipped become NaN so they cannot shadow a later good row.
    duplicate = ok & strings["doc_id"].where(ok).duplicated()
    keep = (ok & ~duplicate).to_numpy()
    report = CorpusReport(
        n_read=len(frame),
        n_empty=int(empty.sum()),
        n_invalid_utf8=int(invalid.sum()),
        n_duplicate_ids=int(duplicate.sum()),
        n_kept=int(keep.sum()),
    )
    if report.n_kept < report.n_read:
        logger.warning("%s: skipped rows: %s", where, report)
    cleaned = frame.assign(**strings).loc[keep].reset_index(drop=True)
    return _finalize(cleaned, where), report


def _finalize(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Exactly CORPUS_COLUMNS: str text columns, datetime64[ns] date, bool synthetic."""
    out = frame.reindex(columns=CORPUS_COLUMNS).reset_index(drop=True)
    for col in ("doc_id", "text", "label", "ticker", "event", "source"):
        out[col] = out[col].astype("str")  # nulls stay null
    # utc=True so mixed offsets parse; stored as naive UTC.
    dates = pd.to_datetime(out["date"], errors="coerce", utc=True, format="mixed")
    n_bad = int((dates.isna() & out["date"].notna()).sum())
    if n_bad:
        logger.warning("%s: %d dates could not be parsed; set to NaT", where, n_bad)
    out["date"] = dates.dt.tz_localize(None).astype("datetime64[ns]")
    out["synthetic"] = out["synthetic"].eq(True)  # absent (NaN) means real text
    return out


def write_corpus(df: pd.DataFrame, path: PathLike) -> None:
    """Save a corpus as Parquet, atomically; refuses frames missing CORPUS_COLUMNS."""
    missing = [c for c in CORPUS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"corpus for {path} lacks column(s) {missing}")
    write_parquet(df[CORPUS_COLUMNS], path)
