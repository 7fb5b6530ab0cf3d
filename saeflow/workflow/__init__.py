"""What every stage shares, at the bottom of the stack (it imports no other saeflow
subpackage): the typed configs, what a rule script does around its one call
(`job`: log, threads, provenance record), provenance and `saeflow audit`, the
SLURM pre-flight check, atomic output and hashing, device choice, figure saving.

Inputs: config.yaml (checked against schemas/config.schema.yaml); each job's
input files (hashed into its record); profiles/<name>/config.yaml (check-cluster).
Outputs: results/.provenance/<output>.json per job output; the job's log under
logs/<stage>/; `saeflow audit PATH` prints a result's chain back to the corpora.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "job": "saeflow.workflow.script",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
