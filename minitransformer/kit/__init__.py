"""The student kit: is my stage right, and how does it compare?

- `contract`: `check_stage(kind, variant)` runs the stage contract on a variant
  under a matrix of configurations (`matrix`) and prints one line per check
  (the checks themselves are in `checks`);
- `gradcheck`: a backward against finite differences, for one function or the
  whole model;
- `compare`: train variants that differ in one stage, on the same data and seed.
"""

from .compare import compare
from .contract import check_stage
from .gradcheck import gradcheck, gradcheck_model

__all__ = ["check_stage", "compare", "gradcheck", "gradcheck_model"]
