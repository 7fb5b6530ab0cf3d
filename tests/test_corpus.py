"""Corpus loading, cleaning and the gensim general-domain corpus.

Every input file is written by the test into tmp_path; nothing touches the network.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import re

import datasets
import huggingface_hub
import pandas as pd
import pytest
from conftest import edited_config, fresh_workdir, snakemake

from saeflow.corpus.build import (
    CORPUS_COLUMNS,
    build_corpus,
    load_hf_dataset,
    load_local_table,
    load_local_text,
    write_corpus,
)
from saeflow.corpus.general import general_corpus, is_finance, split_passages
from saeflow.workflow.config import CorpusConfig

ROWS = pd.DataFrame(
    {
        "id": ["a1", "a2", "a3"],
        "headline": ["Shares rise", "Profit falls", "Bank holds rates"],
        "sentiment": ["positive", "negative", "neutral"],
        "day": ["2020-01-02", "2020-01-03", "2020-01-06"],
        "symbol": ["MSFT", "AMZN", "NVDA"],
    }
)
COLUMNS = dict(
    text_column="headline",
    label_column="sentiment",
    date_column="day",
    ticker_column="symbol",
    id_column="id",
)


def _write(df: pd.DataFrame, path) -> None:
    writers = {
        ".csv": lambda: df.to_csv(path, index=False),
        ".tsv": lambda: df.to_csv(path, sep="\t", index=False),
        ".parquet": lambda: df.to_parquet(path, index=False),
        ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
        ".json": lambda: df.to_json(path, orient="records"),
    }
    writers[path.suffix]()


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet", ".jsonl", ".json"])
def test_local_table_formats_give_same_corpus(tmp_path, ext):
    path = tmp_path / f"news{ext}"
    _write(ROWS, path)

    df, report = load_local_table(path, **COLUMNS)

    assert list(df.columns) == CORPUS_COLUMNS
    assert df["doc_id"].tolist() == ["a1", "a2", "a3"]
    assert df["text"].tolist() == ROWS["headline"].tolist()
    assert df["label"].tolist() == ["positive", "negative", "neutral"]
    assert df["ticker"].tolist() == ["MSFT", "AMZN", "NVDA"]
    assert df["date"].dtype == "datetime64[ns]"
    assert df["date"].iloc[2] == pd.Timestamp("2020-01-06")
    assert df["event"].isna().all() and not df["synthetic"].any()
    assert df["source"].eq(path.name).all()
    assert report == (3, 0, 0, 0, 3)


def test_csv_invalid_utf8_and_empty_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "news.csv"
    path.write_bytes(
        b"text,label\n"
        b"good one,pos\n"
        b'"bad \xff\xfe bytes",neg\n'
        b",neu\n"
        b'"   ",neu\n'
        b"caf\xc3\xa9 is fine,pos\n"
    )

    df, report = load_local_table(path, "text", label_column="label")

    assert report == (5, 2, 1, 0, 2)
    assert df["text"].tolist() == ["good one", "café is fine"]
    # Ids count every row read, so they do not shift when rows are skipped.
    assert df["doc_id"].tolist() == ["news-0", "news-4"]
    assert df["date"].dtype == "datetime64[ns]" and df["date"].isna().all()


def test_jsonl_and_parquet_invalid_utf8_counted(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b'{"text": "ok"}\n\n{"text": "bad \xff"}\n{"text": ""}\n')
    parquet = tmp_path / "b.parquet"
    pd.DataFrame({"text": [b"ok", b"bad \xff"]}).to_parquet(parquet)

    assert load_local_table(jsonl, "text")[1] == (3, 1, 1, 0, 1)
    assert load_local_table(parquet, "text")[1] == (2, 0, 1, 0, 1)


def test_txt_lines_one_document_per_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(
        b"\xef\xbb\xbffirst line\r\nbad \xff bytes\n\n  \ncaf\xc3\xa9 last\n"
    )

    df, report = load_local_text(path, "lines")

    # As a CSV's rows: bad bytes and empty lines skipped and counted, ids kept.
    assert report == (5, 2, 1, 0, 2)
    assert df["text"].tolist() == ["first line", "café last"]
    assert df["doc_id"].tolist() == ["notes-0", "notes-4"]
    assert df["source"].eq("notes.txt").all() and df["label"].isna().all()


def test_txt_paragraphs_split_on_blank_lines(tmp_path):
    path = tmp_path / "essays.txt"
    path.write_text("\n\nFirst para\ngoes on.\n\n \n\nSecond para.\n\n\nThird.\n")
    cfg = CorpusConfig(source="local", path=str(path), text_format="paragraphs")

    df, report = build_corpus(cfg, seed=0)

    assert df["text"].tolist() == ["First para\ngoes on.", "Second para.", "Third."]
    assert df["doc_id"].tolist() == ["essays-0", "essays-1", "essays-2"]
    assert report == (3, 0, 0, 0, 3)


def test_txt_folder_one_document_per_file(tmp_path):
    folder = tmp_path / "letters"
    (folder / "2020").mkdir(parents=True)
    (folder / "b.txt").write_text("Second letter.\n\nTwo paragraphs.\n")
    (folder / "2020" / "a.txt").write_text("First letter.")
    (folder / "bad.txt").write_bytes(b"\xff\xfe")
    (folder / "notes.md").write_text("not a .txt file")

    df, report = build_corpus(CorpusConfig(source="local", path=str(folder)), seed=0)

    assert df["doc_id"].tolist() == ["2020/a", "b"]
    assert df["text"].tolist() == ["First letter.", "Second letter.\n\nTwo paragraphs."]
    assert report == (3, 0, 1, 0, 2)


def test_duplicate_ids_keep_the_first(tmp_path):
    path = tmp_path / "dup.csv"
    pd.DataFrame({"id": [7, 7, 8], "text": ["x", "y", "z"]}).to_csv(path, index=False)

    df, report = load_local_table(path, "text", id_column="id")

    assert df["doc_id"].tolist() == ["7", "8"] and df["text"].tolist() == ["x", "z"]
    assert report.n_duplicate_ids == 1


def test_missing_text_column_names_file_and_columns(tmp_path):
    path = tmp_path / "news.csv"
    _write(ROWS, path)

    with pytest.raises(ValueError) as err:
        load_local_table(path, "text")

    message = str(err.value)
    assert str(path) in message and "text_column='text'" in message
    assert "headline" in message and "symbol" in message


def test_bad_jsonl_line_reports_line_number(tmp_path):
    path = tmp_path / "news.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": broken\n')

    with pytest.raises(ValueError, match=r"news\.jsonl: line 3 "):
        load_local_table(path, "text")


def test_write_corpus_roundtrip(tmp_path):
    df, _ = load_local_table(_csv(tmp_path), **COLUMNS)
    out = tmp_path / "out" / "corpus.parquet"

    write_corpus(df, out)

    pd.testing.assert_frame_equal(pd.read_parquet(out), df)


def _csv(tmp_path):
    path = tmp_path / "news.csv"
    _write(ROWS, path)
    return path


def test_hf_saved_dataset_with_class_labels(tmp_path):
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "neutral", "positive"]),
        }
    )
    data = {"sentence": ["Stocks slump", "", "Profits soar"], "label": [0, 1, 2]}
    folder = tmp_path / "phrasebank"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(data, features=features)}
    ).save_to_disk(str(folder))

    df, report = load_hf_dataset(
        str(folder), split="train", text_column="sentence", label_column="label"
    )

    assert list(df.columns) == CORPUS_COLUMNS
    assert df["label"].tolist() == ["negative", "positive"]
    assert df["doc_id"].tolist() == ["phrasebank-0", "phrasebank-2"]
    assert report == (3, 1, 0, 0, 2)


def test_hf_hub_id_offline_error_names_dataset(monkeypatch):
    # In case another module imported the hub client before HF_HUB_OFFLINE was set.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    with pytest.raises(RuntimeError, match=r"'no-such-org/no-such-data'.*offline"):
        load_hf_dataset("no-such-org/no-such-data", text_column="text")


def test_build_corpus_local_max_docs_is_seeded_and_ordered(tmp_path):
    cfg = CorpusConfig(source="local", path=str(_csv(tmp_path)), max_docs=2, **COLUMNS)

    first, report = build_corpus(cfg, seed=3)
    again, _ = build_corpus(cfg, seed=3)

    pd.testing.assert_frame_equal(first, again)
    assert report.n_read == 3 and report.n_kept == 2
    assert first["doc_id"].tolist() == sorted(first["doc_id"])


def test_build_corpus_synthetic_mixes_real_finance_news():
    cfg = CorpusConfig(source="synthetic_headlines", n_docs=40, mix_real_finance=True)

    df, report = build_corpus(cfg, seed=0)

    assert list(df.columns) == CORPUS_COLUMNS and df["doc_id"].is_unique
    real = df[~df["synthetic"]]
    assert df["synthetic"].sum() == 40 and len(real) > 10
    assert real["doc_id"].str.startswith("lee-").all() and real["label"].isna().all()
    assert report.n_kept == len(df)


def test_build_corpus_gensim_lee_excludes_finance():
    lee = CorpusConfig(source="gensim", parts=["lee"])
    general = CorpusConfig(source="gensim", parts=["lee"], exclude_finance=True)
    domain = CorpusConfig(source="synthetic_headlines", n_docs=5, mix_real_finance=True)

    all_ids = set(build_corpus(lee, seed=0)[0]["doc_id"])
    general_ids = set(build_corpus(general, seed=0)[0]["doc_id"])
    domain_df = build_corpus(domain, seed=0)[0]
    finance_ids = set(domain_df.loc[~domain_df["synthetic"], "doc_id"])

    assert general_ids.isdisjoint(finance_ids)
    assert general_ids | finance_ids == all_ids


def test_is_finance_keywords():
    assert is_finance(
        "The Reserve Bank cut interest rates; shares fell, the economy slowed."
    )
    assert not is_finance(
        "Troops entered the West Bank; the bank of the river flooded."
    )


def test_split_passages_cuts_on_sentences():
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(20))

    passages = split_passages(text, passage_words=20)

    # 20 sentences of 7 words: six passages of 3 sentences, then a tail of 2.
    assert [len(p.split()) for p in passages] == [21] * 6 + [14]
    assert all(p.endswith(".") for p in passages)
    assert " ".join(passages) == text


@pytest.fixture(scope="module")
def gensim_corpus() -> pd.DataFrame:
    return general_corpus()


def test_gensim_corpus_is_clean_prose(gensim_corpus):
    counts = gensim_corpus["source"].value_counts()

    assert counts["wikipedia"] > 100 and counts["lee"] > 100
    assert gensim_corpus["doc_id"].is_unique
    assert gensim_corpus["doc_id"].str.fullmatch(r"(wiki|lee)-\d+-\d+").all()
    for markup in ("[[", "]]", "{{", "}}", "<ref", "'''", "|"):
        assert not gensim_corpus["text"].str.contains(markup, regex=False).any()
    # Prose keeps its case and punctuation.
    assert gensim_corpus["text"].str.contains(r"[A-Z][a-z]+ .*[,.]").mean() > 0.95
    words = gensim_corpus["text"].str.split().str.len()
    assert 70 <= words.median() <= 110


def test_gensim_corpus_ids_are_stable(gensim_corpus):
    again = general_corpus()

    pd.testing.assert_frame_equal(again, gensim_corpus)
    assert re.fullmatch(r"wiki-\d+-0", gensim_corpus["doc_id"].iloc[0])


def test_plain_text_corpora_in_the_workflow(tmp_path, tiny_bert):
    work = fresh_workdir(tmp_path, tiny_bert)
    (work / "general.txt").write_text("Rivers reach the sea.\n\nBirds fly south.\n")
    (work / "domain").mkdir()
    (work / "domain" / "q1.txt").write_text("Shares rise after earnings.\n")

    def edit(cfg):
        cfg["corpora"]["domain"] = {"source": "local", "path": "domain"}
        cfg["corpora"]["general"] = {
            "source": "local",
            "path": "general.txt",
            "text_format": "paragraphs",
        }
        # Unlabelled domain text: fine-tune by masked LM (the classifier needs
        # labels, and the backtest's sentiment feature needs the classifier).
        cfg["finetune"]["objective"] = "mlm"
        cfg["backtest"]["activate"] = False

    config = edited_config(work, "txt.yaml", edit)
    targets = ["results/corpus/domain.parquet", "results/corpus/general.parquet"]
    result = snakemake(work, "--cores", "1", *targets, config=config)

    assert result.returncode == 0, result.stderr[-3000:]
    domain, general = (pd.read_parquet(work / t)["text"].tolist() for t in targets)
    assert domain == ["Shares rise after earnings."]
    assert general == ["Rivers reach the sea.", "Birds fly south."]
