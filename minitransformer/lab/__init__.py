"""An interpretability lab on the numpy model, with its own hand-written backward.

- `patching`: activation patching by layer, position and head, with a chosen metric;
- `paths`: path patching, head -> head (via q, k or v) and head -> logits;
- `attribution`: attribution patching, every patch estimated from one backward pass;
- `dla`: direct logit attribution, the logits split into per-component contributions;
- `detectors`: previous-token, duplicate-token, induction and attention-sink scores;
- `induction`: a two-layer attention-only model whose induction heads form as you watch.
- `inputs`: the checks all of them run first on ids, prompt pairs and token ids (bad input, a clear error).

Its figures are in `minitransformer.figures.lab`, with every other figure of the project.
Everything reads the published activation names of `minitransformer.trace`.
"""

from . import attribution, detectors, dla, induction, patching, paths  # noqa: F401
