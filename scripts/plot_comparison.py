"""Rule plot_comparison: comparison tables → the four comparison figures."""

from saeflow.compare import make_comparison_figures
from saeflow.workflow import job
from saeflow.workflow.config import ComparePlotConfig

with job(snakemake) as sm:  # noqa: F821
    make_comparison_figures(
        sm.input.overlap,
        dict(zip(sm.params.layers, sm.input.matches, strict=True)),
        sm.input.summary,
        ComparePlotConfig.from_dict(sm.params.plots, "compare.plots: "),
        dict(sm.output.items()),
    )
