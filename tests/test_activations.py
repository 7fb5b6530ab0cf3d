"""Tests for the HDF5 activation cache, on a tiny BERT and a tiny Llama."""

import h5py
import numpy as np
import pytest
import torch
from conftest import TEXTS

import saeflow.activations.cache as activations
from saeflow import __version__
from saeflow.activations.cache import cache_activations
from saeflow.models.loading import load_encoder, load_tokenizer, weights_hash
from saeflow.workflow.config import ActivationConfig

DOC_IDS = [f"d{i}" for i in range(len(TEXTS))]
MAX_LENGTH = 12  # shorter than every text: each has at least two windows
COLUMNS = ["doc", "window", "pos", "token_id", "is_special"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["tiny_bert", "tiny_llama"])
def ref(request) -> str:
    return str(request.getfixturevalue(request.param))


def run(ref, folder, layers=(0, 2), **cfg):
    cfg = ActivationConfig(
        layers=list(layers), max_length=MAX_LENGTH, batch_size=2, chunk_rows=16, **cfg
    )
    paths = {layer: folder / f"layer_{layer}.h5" for layer in layers}
    report = cache_activations(ref, DOC_IDS, TEXTS, cfg, paths, {"corpus_hash": "abc"})
    return report, paths


def read(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in ["acts", *COLUMNS]}


def windows(tok, text) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and special-token masks of each max_length window of one text."""
    enc = tok(
        [text],
        truncation=True,
        max_length=MAX_LENGTH,
        return_overflowing_tokens=True,
        return_special_tokens_mask=True,
    )
    return enc["input_ids"], enc["special_tokens_mask"]


def expected_rows(tok, overflow, special_tokens) -> np.ndarray:
    """[n, 5] (doc, window, pos, token_id, is_special) in document order."""
    rows = []
    for d, text in enumerate(TEXTS):
        for w, (ids, mask) in enumerate(zip(*windows(tok, text), strict=True)):
            if overflow == "truncate" and w > 0:
                continue
            for p, (t, s) in enumerate(zip(ids, mask, strict=True)):
                if not (s and special_tokens == "exclude"):
                    rows.append((d, w, p, t, s))
    return np.array(rows)


def stacked(data) -> np.ndarray:
    return np.stack([data[c].astype(np.int64) for c in COLUMNS], axis=1)


def test_file_layout_and_provenance(ref, tmp_path):
    _, paths = run(ref, tmp_path, layers=(1,))

    with h5py.File(paths[1], "r") as f:
        assert set(f) == {"acts", "doc", "doc_ids", *COLUMNS}
        assert f["acts"].dtype == np.float16 and f["acts"].shape[1] == 32
        assert f["acts"].chunks == (16, 32)
        assert len({f[c].shape[0] for c in ["acts", *COLUMNS]}) == 1
        assert list(f["doc_ids"].asstr()[:]) == DOC_IDS
        attrs = dict(f.attrs)
    assert attrs["model_ref"] == ref
    assert attrs["weights_hash"] == weights_hash(ref)
    assert attrs["layer"] == 1
    assert attrs["tokenizer"].endswith(":" + ref)
    assert attrs["max_length"] == MAX_LENGTH
    assert attrs["dtype"] == "float16"
    assert attrs["saeflow_version"] == __version__
    assert attrs["corpus_hash"] == "abc"


def test_rows_map_back_to_tokens_and_hidden_states(ref, tmp_path):
    tok, model = load_tokenizer(ref), load_encoder(ref)

    report, paths = run(ref, tmp_path, overflow="window", special_tokens="flag")

    expected = expected_rows(tok, "window", "flag")
    files = {layer: read(path) for layer, path in paths.items()}
    for d, text in enumerate(TEXTS):
        for w, ids in enumerate(windows(tok, text)[0]):
            with torch.no_grad():
                hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
            for layer, data in files.items():
                rows = (data["doc"] == d) & (data["window"] == w)
                torch.testing.assert_close(
                    torch.from_numpy(data["acts"][rows]).float(),
                    hidden.hidden_states[layer][0, data["pos"][rows]],
                    atol=5e-3,
                    rtol=5e-3,
                )
    for data in files.values():
        np.testing.assert_array_equal(stacked(data), expected)
    assert report.n_tokens == len(expected)


def test_special_tokens_excluded(ref, tmp_path):
    tok = load_tokenizer(ref)
    flagged = expected_rows(tok, "truncate", "flag")

    report, paths = run(ref, tmp_path, special_tokens="exclude")

    data = read(paths[0])
    assert not np.isin(data["token_id"], tok.all_special_ids).any()
    assert not data["is_special"].any()
    assert report.n_special_excluded == flagged[:, 4].sum() > 0
    assert report.n_tokens == len(data["acts"]) == len(flagged) - flagged[:, 4].sum()


def test_special_tokens_flagged(ref, tmp_path):
    tok = load_tokenizer(ref)

    report, paths = run(ref, tmp_path, special_tokens="flag")

    data = read(paths[0])
    np.testing.assert_array_equal(
        data["is_special"], np.isin(data["token_id"], tok.all_special_ids)
    )
    assert data["is_special"].any()
    assert report.n_special_excluded == 0


def test_overflow_truncate_keeps_only_first_window(ref, tmp_path):
    tok = load_tokenizer(ref)
    n_long = sum(len(windows(tok, t)[0]) > 1 for t in TEXTS)

    report, paths = run(ref, tmp_path, overflow="truncate")

    data = read(paths[0])
    assert (data["window"] == 0).all()
    assert report.n_truncated == n_long == len(TEXTS)
    assert report.n_windows == report.n_docs == len(TEXTS)
    np.testing.assert_array_equal(
        stacked(data), expected_rows(tok, "truncate", "exclude")
    )


def test_overflow_window_keeps_all_windows(ref, tmp_path):
    tok = load_tokenizer(ref)
    n_windows = sum(len(windows(tok, t)[0]) for t in TEXTS)

    report, paths = run(ref, tmp_path, overflow="window")

    data = read(paths[2])
    pairs = {(d, w) for d, w in zip(data["doc"], data["window"], strict=True)}
    assert len(pairs) == report.n_windows == n_windows > len(TEXTS)
    assert report.n_truncated == len(TEXTS)


def test_max_tokens_caps_every_layer_identically(ref, tmp_path):
    full = read(run(ref, tmp_path / "full", layers=(0, 1, 2))[1][1])
    cap = 23  # not a batch boundary

    report, paths = run(ref, tmp_path / "cap", layers=(0, 1, 2), max_tokens=cap)

    assert report.n_tokens == cap
    capped = [read(p) for p in paths.values()]
    for data in capped:
        assert len(data["acts"]) == cap
        np.testing.assert_array_equal(stacked(data), stacked(full)[:cap])
        with h5py.File(paths[0], "r") as f:
            assert f.attrs["n_tokens"] == cap
    np.testing.assert_array_equal(capped[1]["acts"], full["acts"][:cap])


def test_layer_beyond_depth_raises(ref, tmp_path):
    with pytest.raises(ValueError, match=r"\[3\]"):
        run(ref, tmp_path, layers=(0, 3))

    assert not any(tmp_path.iterdir())


def test_failure_midway_leaves_no_file(ref, tmp_path, monkeypatch):
    real, calls = activations._append, []

    def append_then_fail(*args):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("disk full")
        real(*args)

    monkeypatch.setattr(activations, "_append", append_then_fail)

    with pytest.raises(RuntimeError, match="disk full"):
        run(ref, tmp_path / "out")

    assert list((tmp_path / "out").iterdir()) == []
