"""Lazy package exports, so that parsing the Snakefile imports no torch.

Rules import light config modules of a stage's subpackage while Snakemake parses
the workflow; the names its scripts call (`make_saes`, …) pull in torch. Each
subpackage's `__init__.py` therefore resolves them on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `exports[name]` (the
    defining module) the first time `name` is looked up."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
