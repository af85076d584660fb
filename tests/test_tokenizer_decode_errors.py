"""decode and decode_bytes take a sequence of ids; a single id or None is a clear TypeError."""

import numpy as np
import pytest

from minitransformer.tokenizer import Tokenizer


@pytest.mark.parametrize("ids, kind", [(104, "int"), (None, "NoneType"), (np.int64(104), "int64"),
                                       (np.array(104), "ndarray"), (1.5, "float")])
def test_one_id_or_none_is_a_type_error(ids, kind):
    tok = Tokenizer()
    with pytest.raises(TypeError, match=rf"decode takes a list of ids, got {kind}; for one id use decode\(\[id\]\)"):
        tok.decode(ids)
    with pytest.raises(TypeError, match=f"decode_bytes takes a list of ids, got {kind}"):
        tok.decode_bytes(ids)


def test_sequences_of_ids_still_decode():
    tok = Tokenizer()
    for ids in ([104, 105], (104, 105), np.array([104, 105]), np.array([104, 105], np.int32), range(104, 106),
                iter([104, 105])):
        assert tok.decode(ids) == "hi"
    assert tok.decode_bytes(np.array([104])) == b"h" and tok.decode([]) == ""
