"""Spliced-in evaluation on planted cases: an identity "SAE" recovers 100 % of the
loss, a zero one 0 %; padding and special tokens are left as they are; a real
(random) TopKSAE runs end to end; held-out texts come from the cache's tail."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TEXTS

from saeflow.sae.model import SAEShape, TopKSAE
from saeflow.splice.evaluate import (
    fraction_recovered,
    heldout_doc_ids,
    layer_module,
    make_batches,
    select_texts,
    splice_eval,
    spliced,
)

LABELS = [1, 0, 2, 2, 2]


@pytest.fixture(scope="module")
def tok(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


@pytest.fixture(scope="module")
def classifier(tiny_bert):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig.from_pretrained(tiny_bert, num_labels=3)
    return BertForSequenceClassification(cfg).eval()


@pytest.fixture(scope="module")
def encoder(tiny_bert):
    from transformers import BertModel

    return BertModel.from_pretrained(tiny_bert).eval()


def batches(tok, labels=None, exclude_special=True):
    return make_batches(tok, TEXTS, labels, 32, 2, exclude_special, "cpu")


def test_fraction_recovered_formula():
    assert fraction_recovered(1.0, 1.0, 3.0) == 1.0
    assert fraction_recovered(1.0, 3.0, 3.0) == 0.0
    assert fraction_recovered(1.0, 2.5, 3.0) == 0.25
    assert np.isnan(fraction_recovered(1.0, 2.0, 1.0))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_module_outputs_hidden_state(encoder, tok, layer):
    b = batches(tok)[0]
    seen = []
    with spliced(encoder, layer, lambda x: seen.append(x) or x, b.mask):
        hidden = encoder(**b.inputs, output_hidden_states=True).hidden_states
    torch.testing.assert_close(seen[0], hidden[layer][b.mask])


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_module_outputs_hidden_state_llama(tiny_llama, layer):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_llama).eval()
    ids, mask = torch.tensor([[1, 5, 6, 7]]), torch.ones(1, 4, dtype=torch.bool)
    seen = []
    with spliced(model, layer, lambda x: seen.append(x) or x, mask):
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(seen[0], hidden[layer][mask])


def test_identity_recovers_all_and_zero_none(classifier, tok):
    bs = batches(tok, LABELS)
    ident = splice_eval(classifier, "classifier", 1, lambda x: x, bs)["conditions"]
    assert ident["sae"]["fraction_recovered"] == 1.0
    assert ident["sae"]["kl_from_clean"] == 0.0
    assert ident["sae"]["accuracy"] == ident["clean"]["accuracy"]
    zero = splice_eval(classifier, "classifier", 1, lambda x: 0 * x, bs)
    assert zero["conditions"]["sae"]["fraction_recovered"] == 0.0
    assert zero["conditions"]["zero"]["loss"] != zero["conditions"]["clean"]["loss"]
    assert zero["sae_fvu"] == pytest.approx(1.0, rel=0.5)  # ‖x‖² vs ‖x - mean‖²


def test_encoder_identity_cosine_one(encoder, tok):
    out = splice_eval(encoder, "encoder", 2, lambda x: x, batches(tok))
    cond = out["conditions"]
    assert cond["sae"]["cosine_to_clean"] == pytest.approx(1.0, abs=1e-6)
    assert cond["sae"]["fraction_recovered"] == 1.0
    assert cond["zero"]["cosine_to_clean"] < 1.0
    assert out["sae_fvu"] == 0.0


@pytest.mark.parametrize("exclude_special", [True, False])
def test_padding_and_special_tokens_untouched(encoder, tok, exclude_special):
    b = batches(tok, exclude_special=exclude_special)[0]
    special = torch.tensor(
        [
            tok.get_special_tokens_mask(ids, already_has_special_tokens=True)
            for ids in b.inputs["input_ids"].tolist()
        ]
    ).bool()
    attn = b.inputs["attention_mask"].bool()
    assert (~attn).any(), "the batch should hold padding"
    assert b.mask.equal(attn & ~special if exclude_special else attn)

    def run(f):
        seen = []
        with spliced(encoder, 1, f, b.mask):
            handle = layer_module(encoder, 1).register_forward_hook(
                lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o)
            )
            encoder(**b.inputs)
            handle.remove()
        return seen[0]

    clean, moved = run(lambda x: x), run(lambda x: x + 100.0)
    torch.testing.assert_close(moved[~b.mask], clean[~b.mask])
    torch.testing.assert_close(moved[b.mask], clean[b.mask] + 100.0)


def test_real_sae_end_to_end(classifier, tok):
    sae = TopKSAE(SAEShape(d_in=32, n_latents=64, k=4), seed=0).eval()
    out = splice_eval(
        classifier,
        "classifier",
        1,
        lambda x: sae.decode(sae.encode(x)),
        batches(tok, LABELS),
    )
    assert out["n_docs"] == len(TEXTS)
    assert out["n_tokens_spliced"] > 0
    values = [v for m in out["conditions"].values() for v in m.values()]
    assert np.isfinite(values + [out["sae_fvu"]]).all()


def test_last_layer_without_cls_leaves_classifier_unchanged(classifier, tok):
    # The head reads [CLS] of the last layer, which is excluded from splicing:
    # nothing to recover, and the fraction says so with NaN.
    out = splice_eval(
        classifier, "classifier", 2, torch.zeros_like, batches(tok, LABELS)
    )
    assert out["conditions"]["zero"]["loss"] == out["conditions"]["clean"]["loss"]
    assert np.isnan(out["conditions"]["sae"]["fraction_recovered"])


def test_causal_lm_identity(tiny_llama):
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_llama).eval()
    ltok = AutoTokenizer.from_pretrained(tiny_llama)
    ltok.pad_token = ltok.eos_token
    bs = make_batches(ltok, TEXTS, None, 32, 2, True, "cpu")
    out = splice_eval(model, "causal_lm", 1, lambda x: x, bs)["conditions"]
    assert out["sae"]["fraction_recovered"] == 1.0
    assert out["zero"]["loss"] != out["clean"]["loss"]


def test_heldout_texts_from_cache_tail(tmp_path):
    cache = tmp_path / "c.h5"
    with h5py.File(cache, "w") as f:
        f["doc"] = np.repeat(np.arange(5), 4)  # 5 documents of 4 rows
        f["doc_ids"] = np.array([f"d{i}" for i in range(5)], dtype=object)
    # The last 30 % = 6 rows: all of d4, half of d3 (seen in training).
    assert heldout_doc_ids(cache, 0.3) == ["d4"]
    corpus = pd.DataFrame(
        {"doc_id": [f"d{i}" for i in range(5)], "text": TEXTS, "label": [None] * 5}
    )
    plain = select_texts(corpus, ["d4"], None, None, 10, 0)
    assert plain == (TEXTS[4:], None, "sae_holdout")
    # No labelled held-out document: the fine-tuning's held-out split instead.
    ft_eval = pd.DataFrame({"doc_id": ["x"], "text": ["up"], "label": ["bullish"]})
    labelled = select_texts(corpus, ["d4"], {"bullish": 1}, ft_eval, 10, 0)
    assert labelled == (["up"], [1], "finetune_eval")


@pytest.mark.slow
def test_splice_rules_in_the_real_workflow(tiny_run, tmp_path):
    """splice.activate adds one job per model × layer plus the base SAE spliced
    into the fine-tuned model, and refreshes the summaries that show them
    (SAE summary, comparison, viewer manifest); each writes its conditions."""
    import json
    import shutil

    from conftest import edited_config, planned_jobs, snakemake

    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    cfg = edited_config(
        work, "splice.yaml", lambda c: c.update(splice={"activate": True})
    )
    result = snakemake(work, "--cores", "2", config=cfg)
    assert result.returncode == 0, result.stderr[-4000:]
    assert planned_jobs(result) == {
        "evaluate_spliced": 4,
        "evaluate_spliced_base_into_finetuned": 2,
        "summarize_saes": 1,
        "summarize_comparison": 1,
        "plot_comparison": 1,
        "build_viewer_data": 1,
        "all": 1,
    }
    out = json.loads((work / "results/sae/finetuned/layer_1/spliced.json").read_text())
    assert out["kind"] == "classifier" and out["n_tokens_spliced"] > 0
    assert set(out["conditions"]) == {"clean", "sae", "zero", "mean"}
    assert out["conditions"]["clean"]["kl_from_clean"] == 0.0
    base = json.loads((work / "results/sae/base/layer_2/spliced.json").read_text())
    assert base["kind"] == "encoder"
    assert base["conditions"]["clean"]["cosine_to_clean"] == pytest.approx(1.0)
    into = work / "results/compare/layer_1/spliced_base_into_finetuned.json"
    assert json.loads(into.read_text())["kind"] == "classifier"
    # The classifier's last layer (2) has nothing to recover: its row stays empty.
    summary = pd.read_csv(work / "results/sae/sae_summary.csv").set_index(
        ["model", "layer"]
    )
    assert summary["splice_kind"].notna().all()
    recovered = summary["spliced_recovered"]
    assert recovered.drop(("finetuned", 2)).notna().all()
    assert summary.loc[("base", 1), "in_finetuned_recovered"] > 0
    overlap = pd.read_csv(work / "results/compare/overlap_by_layer.csv")
    assert overlap.loc[0, "base_sae_in_finetuned_recovered"] > 0
    manifest = json.loads((work / "results/viewer/manifest.json").read_text())
    assert manifest["saes"]["finetuned/layer_1"]["splice_kind"] == "classifier"
