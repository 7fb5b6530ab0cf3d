"""Domain-adaptive fine-tuning from unlabelled text (finetune.objective: mlm): BERT
masking, masked-LM training of a tiny random BERT that ships no MLM head (as
all-MiniLM-L6-v2), next-token training of a tiny Llama, held-out loss before and
after on the same masks, and the spliced evaluation of a masked LM."""

import math

import pytest
import torch
from conftest import TEXTS
from transformers import AutoTokenizer, BertForMaskedLM, BertModel

from saeflow.corpus.synthetic import generate_headlines
from saeflow.models.domain_lm import (
    LMFinetuneResult,
    finetune_lm,
    lm_kind,
    mask_tokens,
    split_documents,
)
from saeflow.models.loading import load_encoder, load_with_head, model_kind
from saeflow.splice.evaluate import make_batches, splice_eval
from saeflow.workflow.config import ConfigError, FinetuneConfig

CFG = FinetuneConfig(
    epochs=4.0,
    lr=2e-3,
    batch_size=16,
    max_length=24,
    eval_fraction=0.2,
    objective="mlm",
    head_warmup_steps=10,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus():
    """60 headlines with their labels removed: unlabelled domain text."""
    df = generate_headlines(
        n_docs=60,
        start_date="2015-01-01",
        end_date="2015-12-31",
        tickers=["MSFT", "AMZN"],
        label_noise=0.0,
        seed=0,
    )
    return df.assign(label=None)


@pytest.fixture(scope="module")
def tuned_bert(tiny_bert, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlm") / "model"
    return finetune_lm(str(tiny_bert), corpus, CFG, seed=0, out_dir=out), out


def test_mask_tokens_bert_recipe():
    ids = torch.arange(10, 4010).reshape(40, 100)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False
    gen = torch.Generator().manual_seed(0)
    masked, labels = mask_tokens(ids, maskable, 0.15, 3, 5000, gen)
    chosen = labels != -100
    assert not chosen[:, 0].any()  # never a special token
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])
    assert 0.13 < chosen.float().mean() < 0.17
    assert 0.75 < (masked[chosen] == 3).float().mean() < 0.85  # 80 % [MASK]
    again, _ = mask_tokens(
        ids, maskable, 0.15, 3, 5000, torch.Generator().manual_seed(0)
    )
    assert torch.equal(masked, again)  # seeded


def test_split_ignores_labels(corpus):
    train, held = split_documents(corpus, 0.2, 0)
    assert (len(train), len(held)) == (48, 12)
    assert set(train["doc_id"]).isdisjoint(held["doc_id"])


def test_masked_lm_from_checkpoint_without_head(tuned_bert, tiny_bert):
    result, out = tuned_bert

    assert isinstance(result, LMFinetuneResult)
    assert result.objective == "masked_lm" == lm_kind(str(tiny_bert))
    # The tiny BERT is saved as a bare BertModel, like all-MiniLM-L6-v2.
    assert "cls.predictions.transform.dense.weight" in result.head_initialised
    assert result.loss_after < result.loss_before
    assert result.perplexity_before == pytest.approx(math.exp(result.loss_before))
    assert (result.n_train, result.n_eval) == (48, 12) and result.n_eval_tokens > 0
    # The checkpoint keeps its head; AutoModel reads the bare encoder from it.
    assert model_kind(str(out)) == "masked_lm"
    assert type(load_encoder(str(out))) is BertModel
    assert type(load_with_head(str(out))[0]) is BertForMaskedLM


def test_masked_lm_is_deterministic(tuned_bert, tiny_bert, corpus, tmp_path):
    cfg = FinetuneConfig(**{**CFG.to_dict(), "epochs": 4.0})
    again = finetune_lm(str(tiny_bert), corpus, cfg, seed=0, out_dir=tmp_path / "m")
    assert again == tuned_bert[0]


def test_next_token_training_of_causal_lm(tiny_llama, corpus, tmp_path):
    result = finetune_lm(str(tiny_llama), corpus, CFG, seed=0, out_dir=tmp_path / "m")

    assert result.objective == "causal_lm"
    assert result.head_initialised == []
    assert result.loss_after < result.loss_before
    assert model_kind(str(tmp_path / "m")) == "causal_lm"


def test_mlm_probability_checked():
    with pytest.raises(ConfigError, match="finetune.mlm_probability"):
        FinetuneConfig(objective="mlm", mlm_probability=1.5)


def test_spliced_masked_lm_identity_recovers_all(tuned_bert):
    _, out = tuned_bert
    model, kind = load_with_head(str(out))
    tok = AutoTokenizer.from_pretrained(out)
    bs = make_batches(tok, TEXTS * 4, None, 32, 4, True, "cpu", 0.3, seed=0)
    assert all((b.lm_labels != -100).any() for b in bs)

    res = splice_eval(model, kind, 1, lambda x: x, bs)["conditions"]

    assert res["sae"]["fraction_recovered"] == pytest.approx(1.0)
    assert res["sae"]["loss"] == pytest.approx(res["clean"]["loss"])
    assert res["zero"]["loss"] != res["clean"]["loss"]
    assert 0.0 <= res["clean"]["accuracy"] <= 1.0
    # Same seed, same masks: the clean loss is reproducible.
    bs2 = make_batches(tok, TEXTS * 4, None, 32, 4, True, "cpu", 0.3, seed=0)
    again = splice_eval(model, kind, 1, lambda x: x, bs2)["conditions"]
    assert again["clean"]["loss"] == pytest.approx(res["clean"]["loss"])
