"""Parse-time checks of local input files: they exist, can be read, and hold the
columns the config names, judged from the header alone (CSV/TSV first line,
Parquet schema) so the check stays fast on big files.

Used for `corpora.<name>` with source `local` and by the backtest's news and
price files. Errors name the config key, as the schema's do.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from saeflow.workflow.config import ConfigError, CorpusConfig

_CSV_SEPARATORS = {".csv": ",", ".txt": ",", ".tsv": "\t"}
_TABLE_SUFFIXES = (*_CSV_SEPARATORS, ".parquet", ".jsonl", ".json")
_COLUMN_KEYS = ("text", "label", "date", "ticker", "id")


def check_corpus_files(cfg: CorpusConfig, key: str) -> None:
    """Check a local corpus' path (and columns); `key` is `corpora.<name>`."""
    if cfg.source != "local" or cfg.path is None:
        return
    path = Path(cfg.path)
    if path.is_dir() or path.suffix.lower() == ".txt":
        _check_plain_text(path, cfg, key)
        return
    columns = {
        f"{name}_column": getattr(cfg, f"{name}_column") for name in _COLUMN_KEYS
    }
    check_table(path, key, columns)


def _check_plain_text(path: Path, cfg: CorpusConfig, key: str) -> None:
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ConfigError(
                f"invalid config at key '{key}.path': folder {path} holds no .txt "
                "files (a folder corpus reads each .txt file as one document)"
            )
        _check_readable(files[0], f"{key}.path")
    else:
        check_file(path, f"{key}.path")
    # Plain text has no columns: a label or id column asked of it is a mistake.
    for name in _COLUMN_KEYS[1:]:
        if getattr(cfg, f"{name}_column") is not None:
            raise ConfigError(
                f"invalid config at key '{key}.{name}_column': {path} is plain "
                "text, which has no columns; set it to null or use a table"
            )


def check_table(path: Path, key: str, columns: Mapping[str, str | None]) -> list[str]:
    """Check that a table file exists, is readable and has `columns`.

    `key` is the config block (`backtest.news`), `columns` maps its column keys
    (`text_column`) to the column names they ask for (None: not asked). Returns
    the header's columns ([] for JSON, whose keys are not checked: records need
    not all carry every key).
    """
    check_file(path, f"{key}.path")
    header = table_header(path, f"{key}.path")
    for column_key, name in columns.items():
        if header and name is not None and name not in header:
            raise ConfigError(
                f"invalid config at key '{key}.{column_key}': {path} has no column "
                f"{name!r}; its columns are {header}"
            )
    return header


def check_file(path: Path, key: str) -> None:
    """Check that `path` is a readable file; `key` names the path's config key."""
    if not path.exists():
        raise ConfigError(
            f"invalid config at key '{key}': {path} does not exist (relative "
            f"paths are read from the working directory, {Path.cwd()})"
        )
    if not path.is_file():
        raise ConfigError(f"invalid config at key '{key}': {path} is not a file")
    _check_readable(path, key)


def _check_readable(path: Path, key: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise ConfigError(
            f"invalid config at key '{key}': {path} cannot be read: {err}"
        ) from None


def table_header(path: Path, key: str) -> list[str]:
    """Column names of a table from its header alone; [] for JSON files."""
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise ConfigError(
            f"invalid config at key '{key}': {path} has unsupported extension "
            f"{suffix!r}; use one of {list(_TABLE_SUFFIXES)} or a folder of .txt files"
        )
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq  # only when a Parquet file is configured

            return [str(c) for c in pq.read_schema(path).names]
        if suffix in _CSV_SEPARATORS:
            # As the loaders read them: BOM dropped, bad bytes not fatal.
            with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
                header = next(csv.reader(f, delimiter=_CSV_SEPARATORS[suffix]), [])
            if not header:
                raise ValueError("no header line")
            return header
    except Exception as err:  # a corrupt or foreign file: errors vary by format
        raise ConfigError(
            f"invalid config at key '{key}': {path} is not a readable "
            f"{suffix.lstrip('.')} file: {err}"
        ) from None
    return []
