"""Seeing inside: every activation under a stable name, hooks, and the step-through pipeline.

- `names`: the published table of activation names (``docs/hooks.md``);
- `cache`: `ActivationCache`, `run_with_cache` and `run_with_hooks`;
- `lens`: the logit lens;
- `pipeline`: `Pipeline(tokenizer, model).trace(text)`, the steps in data-flow order.

Every figure lives in `minitransformer.figures`. This package's ``__init__``
imports only `names` and `cache`, which never import the model (the model offers
``model.run_with_cache`` through them); import `Pipeline` from
``minitransformer.trace.pipeline`` or from ``minitransformer``.
"""

from .cache import ActivationCache, run_with_cache, run_with_hooks
from .names import hook_table, hook_table_markdown, hooks_document

__all__ = ["ActivationCache", "hook_table", "hook_table_markdown", "hooks_document", "run_with_cache",
           "run_with_hooks"]
