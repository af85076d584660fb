"""minitransformer: an educational transformer pipeline written from scratch in numpy.

Five stages, each paired with an information-retrieval concept (`concepts.py`):
BPE tokenization (distinction) -> embedding (classification) -> positional
encoding (indexing) -> attention (retrieval) -> feed-forward & output (processing).

The parts of the package:

- the stages: `tokenizer`, `embedding`, `positional`, `attention`, `feedforward`;
- `core`: the shared mechanics (nn, config, the registry of variants);
  `variants` registers the built-in variants of each stage by name;
- `model`: the stages composed into a GPT (forward, backward, generate);
- `training`: optimizer, checkpoints, data, the loop;
- `trace` and `figures`: seeing inside (published names, hooks, the
  step-through pipeline) and every figure;
- `kit`: the student kit (contract checks, gradient checks, compare);
- `interop`: GPT-2 and other formats, safetensors, tokenizer exports;
- `scaleout`: a simulator of DeepSeek-V3's multi-plane fat-tree network.
"""

from . import variants  # noqa: F401  (registers the built-in variants of each stage)
from .concepts import STAGES, stage
from .core.config import ModelConfig
from .model import GPT
from .tokenizer import Tokenizer
from .trace.pipeline import Pipeline

__version__ = "0.1.0"
__all__ = ["GPT", "ModelConfig", "Pipeline", "STAGES", "Tokenizer", "stage", "__version__"]
