import dataclasses

import pytest

from minitransformer import concepts
from minitransformer.concepts import CONCEPTS, STAGES, stage


def test_five_stages_in_pipeline_order_with_their_concepts():
    assert [(s.number, s.key, s.concept) for s in STAGES] == [
        (1, "tokenization", "distinction"),
        (2, "embedding", "classification"),
        (3, "positional", "indexing"),
        (4, "attention", "retrieval"),
        (5, "feedforward", "processing"),
    ]
    assert CONCEPTS == {s.key: s.concept for s in STAGES}


def test_each_stage_names_an_existing_or_planned_module_and_data_flows_between_neighbours():
    assert [s.module for s in STAGES] == ["tokenizer", "embedding", "positional", "attention", "feedforward"]
    # what leaves one stage enters the next (the residual stream keeps its shape through 3 and 4)
    assert STAGES[0].data_out == STAGES[1].data_in
    assert STAGES[1].data_out == STAGES[2].data_in


@pytest.mark.parametrize("query", ["attention", "retrieval", 4])
def test_lookup_by_key_concept_or_number(query):
    assert stage(query) is STAGES[3]


def test_unknown_stage_lists_valid_ones():
    with pytest.raises(KeyError, match="1=tokenization/distinction"):
        stage("convolution")


def test_stages_are_immutable_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        STAGES[0].concept = "other"
    assert isinstance(concepts.STAGES, tuple)
