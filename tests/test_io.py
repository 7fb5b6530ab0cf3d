"""Tests for atomic output and the JSON/CSV/Parquet writers."""

import json

import numpy as np
import pandas as pd
import pytest

from saeflow.workflow.io import atomic_path, write_csv, write_json, write_parquet


class Boom(Exception):
    pass


def test_atomic_path_leaves_nothing_when_body_raises(tmp_path):
    target = tmp_path / "sub" / "out.txt"

    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise Boom

    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_path_keeps_older_file_when_body_raises(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise Boom

    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_replaces_file_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_text("new")

    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.bin").write_text("stale")

    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "w.bin").write_text("half")
        raise Boom
    assert sorted(p.name for p in target.iterdir()) == ["stale.bin"]

    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "w.bin").write_text("full")
    assert sorted(p.name for p in target.iterdir()) == ["w.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_write_json_round_trip_with_numpy_values(tmp_path):
    obj = {"a": 1, "b": [1.5, "x"], "n": np.int64(3), "v": np.arange(3)}

    write_json(obj, tmp_path / "o.json")

    assert json.loads((tmp_path / "o.json").read_text()) == {
        "a": 1,
        "b": [1.5, "x"],
        "n": 3,
        "v": [0, 1, 2],
    }


@pytest.mark.parametrize(
    ("writer", "reader", "name"),
    [(write_csv, pd.read_csv, "t.csv"), (write_parquet, pd.read_parquet, "t.parquet")],
)
def test_write_table_round_trip(tmp_path, writer, reader, name):
    df = pd.DataFrame(
        {"feature": [3, 1, 2], "score": [0.5, -1.25, 2.0]}, index=[7, 8, 9]
    )

    writer(df, tmp_path / name)

    pd.testing.assert_frame_equal(reader(tmp_path / name), df.reset_index(drop=True))


def test_write_json_writes_nan_and_infinity_as_null(tmp_path):
    obj = {"x": float("nan"), "y": [np.float32("inf"), 1.0], "z": np.array([np.nan])}

    write_json(obj, tmp_path / "o.json")

    text = (tmp_path / "o.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": [None, 1.0], "z": [None]}
