"""Use an SAE trained elsewhere in place of training one (config `imported_saes`).

The `import_sae` rule turns a folder in SAELens', sparsify's or our layout
(saeflow.sae.export) into the files `train_sae` would have written for that
model × layer: `results/sae/{model}/layer_{L}/sae/` in our layout, and a
`metrics.json` with its held-out FVU, L0 and never-fired fraction measured on
this run's activations, the same rows a trained SAE is evaluated on. Features,
comparison, labels, splice and viewer then read it unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

KEY = re.compile(r"^(?P<model>[a-z]+)/layer_(?P<layer>\d+)$")


def imported_saes(
    mapping: dict[str, str] | None, models: list[str], layers: list[int]
) -> dict[str, str]:
    """Check `imported_saes` keys ("{model}/layer_{L}") against the run's models
    and SAE layers; return the mapping with the folders as strings."""
    out = {}
    for key, folder in (mapping or {}).items():
        m = KEY.match(str(key))
        if m is None or m["model"] not in models:
            raise ValueError(
                f"imported_saes: key {key!r} must be '<model>/layer_<L>' with model "
                f"one of {models}"
            )
        if int(m["layer"]) not in layers:
            raise ValueError(
                f"imported_saes: {key!r}: layer {m['layer']} is not among this "
                f"run's SAE layers {layers} (preset and activations.layers)"
            )
        out[key] = str(folder)
    return out


def make_imported_sae(
    folder: str | Path,
    acts: list[str],
    holdout_fraction: float,
    batch_size: int,
    device: str,
    out_sae: str | Path,
    out_metrics: str | Path,
) -> None:
    """Convert `folder` to our layout and measure it on this run's held-out rows."""
    from saeflow.sae.data import ActivationSource
    from saeflow.sae.export import detect_layout, import_sae
    from saeflow.sae.trainer import evaluate
    from saeflow.workflow.device import pick_device
    from saeflow.workflow.io import write_json

    layout = detect_layout(folder)
    sae = import_sae(folder, pick_device(device))
    source = ActivationSource(acts, holdout_fraction)
    if sae.shape.d_in != source.d_model:
        raise ValueError(
            f"{folder}: the SAE reads d_in={sae.shape.d_in} but the activations "
            f"({acts[0]}) have width {source.d_model}: wrong model or layer?"
        )
    result = evaluate(sae, source, batch_size)
    sae.save(out_sae)
    write_json(
        {
            "eval": result._asdict(),
            # Training history is the exporter's; never-fired on held-out rows is
            # the closest figure we can measure.
            "dead_fraction": None,
            "kind": sae.shape.kind,
            "n_latents": sae.shape.n_latents,
            "d_in": sae.shape.d_in,
            "config": {"k": sae.shape.k, "kind": sae.shape.kind},
            "imported_from": str(folder),
            "layout": layout,
            "holdout_fraction": holdout_fraction,
        },
        out_metrics,
    )
