"""Stage 1 of the pipeline: byte-level BPE tokenization (concept: distinction).

    >>> from minitransformer.tokenizer import Tokenizer
    >>> tok = Tokenizer.train("low lower lowest", 260)
    >>> tok.decode(tok.encode("lowest")) == "lowest"
    True
"""

from .bpe import ProgressBar, TrainProgress, TrainResult, count_pairs, merge
from .core import StreamDecoder, Tokenizer
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, PATTERNS, split
from .train_fast import train_fast
from .train_reference import train_reference

__all__ = [
    "Tokenizer",
    "StreamDecoder",
    "TrainProgress",
    "TrainResult",
    "ProgressBar",
    "train_fast",
    "train_reference",
    "count_pairs",
    "merge",
    "split",
    "PATTERNS",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
]
