"""minitransformer: an educational transformer pipeline written from scratch in numpy.

Five stages, each paired with an information-retrieval concept (`concepts.py`):
BPE tokenization (distinction) -> embedding (classification) -> positional
encoding (indexing) -> attention (retrieval) -> feed-forward & output (processing).
"""

from .concepts import STAGES, stage
from .tokenizer import Tokenizer

__version__ = "0.1.0"
__all__ = ["STAGES", "stage", "Tokenizer", "__version__"]
