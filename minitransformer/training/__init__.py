"""Training the model: the optimizer, checkpoints, the data, and the loop.

- `optimizer`: AdamW over one flat buffer, clipping, the learning-rate schedule;
- `checkpoint`: a model (and its training state) on disk, and back;
- `data`: the built-in corpus and the small texts;
- `loop`: batches, evaluation, the `Trainer`, and resuming;
- `stop`: Ctrl-C or SIGTERM stop a run between two steps, with a checkpoint.
"""

from .checkpoint import load_model, read_metadata, save_checkpoint, save_model, tokenizer_fingerprint
from .loop import (TrainConfig, Trainer, TrainingDiverged, TrainingInterrupted, TrainState, evaluate_tokens, get_batch,
                   resume, unigram_loss)
from .optimizer import AdamW, clip_grad_norm, lr_at

__all__ = ["AdamW", "TrainConfig", "TrainState", "Trainer", "clip_grad_norm", "evaluate_tokens", "get_batch",
           "load_model", "lr_at", "read_metadata", "resume", "save_checkpoint", "save_model", "tokenizer_fingerprint",
           "TrainingDiverged", "TrainingInterrupted", "unigram_loss"]
