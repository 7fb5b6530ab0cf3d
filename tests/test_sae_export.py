"""Export to SAELens / sparsify layouts and import back."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from saeflow.cli import main
from saeflow.sae.export import (
    default_hook,
    detect_layout,
    export_saelens,
    export_sparsify,
    import_sae,
    layer_of,
)
from saeflow.sae.model import SAEShape, TopKSAE

SHAPE = SAEShape(d_in=12, n_latents=40, k=5)


def data(n: int = 37, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, SHAPE.d_in, generator=gen) + 1.5


def make_sae() -> TopKSAE:
    """Non-trivial scale (≈ 0.3) and biases."""
    sae = TopKSAE(SHAPE, seed=0)
    sae.init_from_data(data(200, seed=1))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(2))
    return sae.eval()


def ours(sae: TopKSAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense code [N, M] and reconstruction [N, D]."""
    with torch.no_grad():
        code = sae.encode(x)
        dense = torch.zeros(len(x), sae.shape.n_latents).scatter(1, code.idx, code.vals)
        return dense, sae.decode(code)


def topk_dense(pre: torch.Tensor, k: int) -> torch.Tensor:
    top = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())


def saelens_forward(folder, x):
    """sae_lens TopKSAE.encode/decode for architecture topk, from the layout."""
    cfg = json.loads((folder / "cfg.json").read_text())
    t = load_file(folder / "sae_weights.safetensors")
    centred = x - t["b_dec"] * cfg["apply_b_dec_to_input"]
    acts = topk_dense(centred @ t["W_enc"] + t["b_enc"], cfg["k"])
    return acts, acts @ t["W_dec"] + t["b_dec"]


def sparsify_forward(folder, x):
    """sparsify SparseCoder.encode/decode (activation topk), from the layout."""
    cfg = json.loads((folder / "cfg.json").read_text())
    t = load_file(folder / "sae.safetensors")
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    acts = topk_dense(pre, cfg["k"])
    return acts, acts @ t["W_dec"] + t["b_dec"]


def test_saelens_layout_reproduces_ours(tmp_path):
    sae, x = make_sae(), data()
    export_saelens(sae, tmp_path / "sl", "blocks.3.hook_resid_post")

    cfg = json.loads((tmp_path / "sl/cfg.json").read_text())
    acts, recon = saelens_forward(tmp_path / "sl", x)
    code, want = ours(sae, x)

    shape = (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"])
    assert shape == ("topk", 12, 40, 5)
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post"
    assert_close(acts, code, atol=1e-5, rtol=0)
    assert_close(recon, want, atol=1e-5, rtol=0)


def test_sparsify_layout_reproduces_ours(tmp_path):
    sae, x = make_sae(), data()
    folder = export_sparsify(sae, tmp_path / "sp", "encoder.layer.3")

    acts, recon = sparsify_forward(folder, x)
    code, want = ours(sae, x)

    assert folder == tmp_path / "sp/encoder.layer.3"
    assert_close(acts, code, atol=1e-5, rtol=0)
    assert_close(recon, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["saelens", "sparsify"])
def test_round_trip_matches_and_reexports_bitwise(tmp_path, fmt):
    sae, x = make_sae(), data()
    export = export_saelens if fmt == "saelens" else export_sparsify
    first = export(sae, tmp_path / "a", "h")

    back = import_sae(first)
    second = export(back, tmp_path / "b", "h")

    assert detect_layout(first) == fmt
    assert back.shape == sae.shape and float(back.scale) == 1.0
    for got, want in zip(ours(back, x), ours(sae, x), strict=True):
        assert_close(got, want, atol=1e-6, rtol=1e-6)
    weights = next(p.name for p in first.glob("*.safetensors"))
    a, b = load_file(first / weights), load_file(second / weights)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_import_ours_is_load(tmp_path):
    sae = make_sae()
    sae.save(tmp_path / "sae")

    back = import_sae(tmp_path / "sae")

    assert detect_layout(tmp_path / "sae") == "saeflow"
    assert all(
        torch.equal(v, back.state_dict()[k]) for k, v in sae.state_dict().items()
    )


@pytest.mark.parametrize("b_dec_in, rescale", [(False, False), (True, True)])
def test_import_saelens_variants(tmp_path, b_dec_in, rescale):
    """apply_b_dec_to_input off and rescale_acts_by_decoder_norm on load exactly."""
    gen = torch.Generator().manual_seed(3)
    d, m, k = 12, 40, 5
    t = {
        "W_enc": torch.randn(d, m, generator=gen),
        "b_enc": torch.randn(m, generator=gen),
        "W_dec": torch.randn(m, d, generator=gen),
        "b_dec": torch.randn(d, generator=gen),
    }
    folder = tmp_path / "sl"
    folder.mkdir()
    save_file(t, folder / "sae_weights.safetensors")
    cfg = {
        "architecture": "topk",
        "d_in": d,
        "d_sae": m,
        "k": k,
        "apply_b_dec_to_input": b_dec_in,
        "rescale_acts_by_decoder_norm": rescale,
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    x = data()

    pre = (x - t["b_dec"] * b_dec_in) @ t["W_enc"] + t["b_enc"]
    norms = t["W_dec"].norm(dim=1) if rescale else torch.ones(m)
    acts = topk_dense(pre * norms, k)
    want = (acts / norms) @ t["W_dec"] + t["b_dec"]
    code, recon = ours(import_sae(folder), x)

    assert_close(code, acts, atol=1e-4, rtol=1e-5)
    assert_close(recon, want, atol=1e-4, rtol=1e-5)


def test_refuses_other_kinds_and_layouts(tmp_path):
    relu = TopKSAE(SAEShape(d_in=4, n_latents=8, k=2, kind="relu"))
    with pytest.raises(ValueError, match="only topk"):
        export_saelens(relu, tmp_path / "x", "h")
    export_saelens(make_sae(), tmp_path / "sl", "h")
    cfg = json.loads((tmp_path / "sl/cfg.json").read_text())
    (tmp_path / "sl/cfg.json").write_text(
        json.dumps({**cfg, "normalize_activations": "layer_norm"})
    )
    with pytest.raises(ValueError, match="normalize_activations"):
        import_sae(tmp_path / "sl")
    export_sparsify(make_sae(), tmp_path / "sp", "encoder.layer.3")
    with pytest.raises(FileNotFoundError, match="encoder.layer.3"):
        import_sae(tmp_path / "sp")
    (tmp_path / "sl/notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        export_saelens(make_sae(), tmp_path / "sl", "h")


def test_hook_names_from_workflow_paths():
    assert layer_of("results/sae/finetuned/layer_4/sae") == 4
    assert layer_of("somewhere/else") is None
    assert default_hook(4, "saelens") == "blocks.3.hook_resid_post"
    assert default_hook(4, "sparsify") == "encoder.layer.3"


def test_real_sparsify_loads_export(tmp_path, monkeypatch):
    """With EleutherAI's sparsify installed: SparseCoder reproduces ours."""
    monkeypatch.setenv("SPARSIFY_DISABLE_TRITON", "1")  # its decoder on the CPU
    sparsify = pytest.importorskip("sparsify")
    sae, x = make_sae(), data()
    folder = export_sparsify(sae, tmp_path, "encoder.layer.3")

    coder = sparsify.SparseCoder.load_from_disk(folder)
    with torch.no_grad():
        enc = coder.encode(x)
        recon = coder.decode(enc.top_acts, enc.top_indices)

    assert_close(recon, ours(sae, x)[1], atol=1e-5, rtol=0)


def test_cli_exports_and_converts_back(tmp_path, capsys):
    sae, x = make_sae(), data()
    src = tmp_path / "results/sae/finetuned/layer_4/sae"
    sae.save(src)

    rc = [
        main(["export", "--sae", str(src), "--format", fmt, "--out", str(out)])
        for fmt, out in [
            ("saelens", tmp_path / "sl"),
            ("sparsify", tmp_path / "sp"),
            ("saeflow", tmp_path / "ours"),
        ]
    ]
    back = ["--sae", str(tmp_path / "sl"), "--out", str(tmp_path / "back")]
    main(["export", "--format", "saeflow", *back])

    assert rc == [0, 0, 0]
    cfg = json.loads((tmp_path / "sl/cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post"
    assert detect_layout(tmp_path / "sp/encoder.layer.3") == "sparsify"
    assert detect_layout(tmp_path / "back") == "saeflow"
    want = ours(sae, x)[1]
    assert torch.equal(ours(TopKSAE.load(tmp_path / "ours"), x)[1], want)
    assert_close(
        ours(TopKSAE.load(tmp_path / "back"), x)[1], want, atol=1e-6, rtol=1e-6
    )


def test_real_saelens_loads_export(tmp_path):
    """With SAELens installed: its SAE.load_from_disk reproduces ours."""
    sae_lens = pytest.importorskip("sae_lens")
    sae, x = make_sae(), data()
    export_saelens(sae, tmp_path, "blocks.3.hook_resid_post")

    loaded = sae_lens.SAE.load_from_disk(tmp_path)
    with torch.no_grad():
        acts = loaded.encode(x)
        recon = loaded.decode(acts)

    assert type(loaded).__name__ == "TopKSAE"
    assert loaded.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    code, want = ours(sae, x)
    assert_close(acts, code, atol=1e-5, rtol=0)
    assert_close(recon, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_imported_sae_replaces_training_with_the_same_downstream(tiny_run, tmp_path):
    """imported_saes: a run's own SAE exported to SAELens' layout and imported
    back is used in place of train_sae; its held-out FVU and feature statistics
    are ours to float32 rounding (scale folded in, see saeflow.sae.export)."""
    import shutil

    import pandas as pd
    from conftest import edited_config, planned_jobs, snakemake

    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    layer = work / "results/sae/base/layer_1"
    exported = export_saelens(TopKSAE.load(layer / "sae"), tmp_path / "lens", "h")
    cfg = edited_config(
        work,
        "imported.yaml",
        lambda c: c.update(imported_saes={"base/layer_1": str(exported)}),
    )
    stats = "results/features/base/layer_1/domain_stats.parquet"
    before = pd.read_parquet(work / stats)
    trained = json.loads((layer / "metrics.json").read_text())["eval"]
    result = snakemake(work, "--cores", "2", stats, config=cfg)
    assert result.returncode == 0, result.stderr[-4000:]
    assert planned_jobs(result) == {"import_sae": 1, "compute_feature_stats": 1}
    metrics = json.loads((layer / "metrics.json").read_text())
    assert metrics["imported_from"] == str(exported)
    assert metrics["layout"] == "saelens"
    assert metrics["eval"]["fvu"] == pytest.approx(trained["fvu"], rel=1e-5)
    assert metrics["eval"]["n_tokens"] == trained["n_tokens"]
    after = pd.read_parquet(work / stats)
    pd.testing.assert_frame_equal(after, before, rtol=1e-5, atol=1e-6)
    # No training curve is asked of an imported SAE.
    dry = snakemake(work, "-n", config=cfg)
    assert "train_sae" not in planned_jobs(dry), dry.stdout[-3000:]
    bad = edited_config(
        work, "bad.yaml", lambda c: c.update(imported_saes={"base/layer_9": "x"})
    )
    refused = snakemake(work, "-n", config=bad)
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert "imported_saes: 'base/layer_9': layer 9 is not among" in message
