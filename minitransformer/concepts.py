"""The five stages of the pipeline and the information-retrieval concept each one teaches.

This table is the single source of truth for the pairing. The CLI demo, the
step-through trace, the figures and the notebooks all read it from here instead
of retyping it, so renaming a concept or rewording a summary happens in one place.

    >>> from minitransformer.concepts import STAGES, stage
    >>> [s.concept for s in STAGES]
    ['distinction', 'classification', 'indexing', 'retrieval', 'processing']
    >>> stage("attention").number
    4
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    Attributes:
        number: position in the pipeline, 1..5, in the order the data flows.
        key: short identifier used in code, traces and figure titles.
        name: human-readable stage name.
        module: the module of `minitransformer` that implements it.
        concept: the information-retrieval concept the stage is paired with.
        question: the question the concept answers, in one line.
        data_in: shape/kind of what enters the stage.
        data_out: shape/kind of what leaves it.
        summary: one paragraph a teacher can read aloud.
        notebook: the course notebook that teaches it (in ``notebooks/``).
    """

    number: int
    key: str
    name: str
    module: str
    concept: str
    question: str
    data_in: str
    data_out: str
    summary: str
    notebook: str


STAGES: tuple[Stage, ...] = (
    Stage(
        number=1,
        key="tokenization",
        name="BPE tokenization",
        module="tokenizer",
        concept="distinction",
        question="Which units of text does the system tell apart?",
        data_in="text (str)",
        data_out="ids (B, T) int",
        summary=(
            "Text becomes UTF-8 bytes, a regex splits it into chunks, and byte-pair "
            "merges learned from a corpus glue frequent neighbours into larger units. "
            "The vocabulary is the set of distinctions the model can ever make: two "
            "strings that map to the same ids are the same to everything downstream."
        ),
        notebook="01_tokenization_distinction.ipynb",
    ),
    Stage(
        number=2,
        key="embedding",
        name="embedding",
        module="embedding",
        concept="classification",
        question="Which kind of token is this, and which tokens are of the same kind?",
        data_in="ids (B, T) int",
        data_out="x (B, T, C) float32",
        summary=(
            "Each id looks up one learned row of W_E. Training moves rows of tokens "
            "that behave alike close together, so the embedding table is a soft "
            "classification of the vocabulary: nearest neighbours share a class."
        ),
        notebook="02_embedding_classification.ipynb",
    ),
    Stage(
        number=3,
        key="positional",
        name="positional encoding",
        module="positional",
        concept="indexing",
        question="Where in the sequence does each token stand?",
        data_in="x (B, T, C) float32",
        data_out="x (B, T, C) float32 (or rotated q, k inside attention)",
        summary=(
            "Attention alone sees a bag of vectors. Positional encoding gives every "
            "position an address (a learned vector, a sinusoidal code, or a rotation "
            "of queries and keys), the way an index gives every record a place."
        ),
        notebook="03_positional_indexing.ipynb",
    ),
    Stage(
        number=4,
        key="attention",
        name="attention",
        module="attention",
        concept="retrieval",
        question="Which earlier tokens hold what this token needs, and what do they hold?",
        data_in="x (B, T, C) float32",
        data_out="x (B, T, C) float32",
        summary=(
            "Each position issues a query, compares it with the keys of the positions "
            "before it, and retrieves a weighted mix of their values: a soft database "
            "lookup. The KV cache (or MLA's latent cache) is the stored index."
        ),
        notebook="04_attention_retrieval.ipynb",
    ),
    Stage(
        number=5,
        key="feedforward",
        name="feed-forward & output",
        module="feedforward",
        concept="processing",
        question="What does each position compute from what it retrieved, and what comes next?",
        data_in="x (B, T, C) float32",
        data_out="logits (B, T, V) -> probs -> next id",
        summary=(
            "An MLP processes every position on its own, then the final norm and the "
            "output head turn the residual stream into logits over the vocabulary, "
            "probabilities, and the next token (the most likely one, or one sampled)."
        ),
        notebook="05_feedforward_processing.ipynb",
    ),
)

CONCEPTS: dict[str, str] = {s.key: s.concept for s in STAGES}


def stage(key_or_number: str | int) -> Stage:
    """Look a stage up by key (``"attention"``), concept (``"retrieval"``) or number (4).

    Raises:
        KeyError: naming the valid keys, concepts and numbers.
    """
    for s in STAGES:
        if key_or_number in (s.key, s.concept, s.number, s.module):
            return s
    valid = ", ".join(f"{s.number}={s.key}/{s.concept}" for s in STAGES)
    raise KeyError(f"no stage {key_or_number!r}; valid stages are {valid}")
