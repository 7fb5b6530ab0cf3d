"""Tests for fine-tuning the base model on labelled synthetic headlines."""

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertModel

from saeflow.corpus.synthetic import generate_headlines
from saeflow.models.finetune import FinetuneResult, finetune, split_labelled
from saeflow.models.loading import load_encoder
from saeflow.workflow.config import FinetuneConfig

CFG = FinetuneConfig(
    epochs=1.0, lr=1e-3, batch_size=16, max_length=24, eval_fraction=0.2
)


pytestmark = pytest.mark.usefixtures("one_thread")


def headlines(n: int = 60) -> pd.DataFrame:
    return generate_headlines(
        n_docs=n,
        start_date="2015-01-01",
        end_date="2015-12-31",
        tickers=["MSFT", "AMZN"],
        label_noise=0.0,
        seed=0,
    )


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    """60 headlines of which 50 are labelled."""
    df = headlines()
    df.loc[df.index[::6], "label"] = None
    return df


@pytest.fixture(scope="module")
def tuned(tiny_bert, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "model"
    return finetune(str(tiny_bert), corpus, CFG, seed=0, out_dir=out), out


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def test_finetune_result(tuned, corpus):
    result, _ = tuned

    assert isinstance(result, FinetuneResult)
    assert 0.0 <= result.accuracy <= 1.0
    assert 0.0 <= result.majority_baseline <= 1.0
    assert result.n_train + result.n_eval == corpus["label"].notna().sum() == 50
    assert result.n_eval == 10
    assert result.labels == sorted(corpus["label"].dropna().unique())
    assert result.final_train_loss > 0


def test_saved_model_loads_as_bare_encoder(tuned, tiny_bert):
    _, out = tuned

    model = load_encoder(str(out))

    assert type(model) is BertModel
    saved = weights(out)
    emb = model.embeddings.word_embeddings.weight
    assert torch.equal(emb, saved["bert.embeddings.word_embeddings.weight"])
    assert not torch.equal(
        emb, load_encoder(str(tiny_bert)).embeddings.word_embeddings.weight
    )


def test_same_seed_same_weights(tuned, tiny_bert, corpus, tmp_path):
    _, first = tuned

    finetune(str(tiny_bert), corpus, CFG, seed=0, out_dir=tmp_path / "again")

    again = weights(tmp_path / "again")
    for name, value in weights(first).items():
        assert torch.equal(again[name], value), name


def test_split_labelled_is_seeded_and_disjoint(corpus):
    train, held = split_labelled(corpus, 0.2, seed=3)

    assert len(held) == 10 and len(train) == 40
    assert not set(train["doc_id"]) & set(held["doc_id"])
    assert train["label"].notna().all()
    assert (
        split_labelled(corpus, 0.2, seed=3)[1]["doc_id"].tolist()
        == held["doc_id"].tolist()
    )


def test_split_labelled_needs_ten_labelled_rows():
    df = headlines(20)
    df.loc[df.index[9:], "label"] = None

    with pytest.raises(ValueError, match="found 9"):
        split_labelled(df, 0.2, seed=0)
