"""A model's own routing decisions on the simulated network: known answers on hand-made tables,
agreement with a brute-force count on a model's table, and node-limited routing's promise."""

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT
from minitransformer.scaleout import real_routing
from minitransformer.scaleout.traffic import moe_dispatch

# 2 nodes x 2 GPUs, 4 experts (expert e on GPU e), one token per GPU, K = 2
TABLE = np.array([[2, 3],   # GPU 0 (node 0): both experts on node 1 -> 2 expert copies, 1 node copy
                  [0, 2],   # GPU 1 (node 0): expert 0 at home, expert 2 remote -> 1 and 1
                  [2, 3],   # GPU 2 (node 1): both at home -> 0 and 0
                  [0, 1]])  # GPU 3 (node 1): both on node 0 -> 2 and 1
H = 10


def flows(traffic):
    out = {}
    for s, d, b in zip(traffic.src.tolist(), traffic.dst.tolist(), traffic.bytes.tolist()):
        out[(s, d)] = out.get((s, d), 0.0) + b
    return out


def test_hand_made_table_gives_the_known_copies_and_flows():
    m = moe_dispatch(2, 2, experts=4, hidden=H, routing=TABLE)
    assert m.tokens == 4 and m.copies == dict(per_expert=5.0, direct=5.0, dedup=3.0)
    # dedup: one network copy per remote node, to the GPU with the sender's local index, then NVLink
    network = {(0, 2): H, (1, 3): H, (3, 1): H}
    nvlink = {(2, 3): 2 * H,  # token 0 (arrived at GPU 2) and GPU 2's own token, both for expert 3
              (3, 2): H,  # token 1 arrived at GPU 3, expert 2 is on GPU 2
              (1, 0): 2 * H}  # token 3 (arrived at GPU 1) and GPU 1's own token, both for expert 0
    assert flows(m.dispatch) == {**network, **nvlink}
    assert flows(m.combine) == {(d, s): 2 * b for (s, d), b in {**network, **nvlink}.items()}  # BF16 back
    assert m.nodes_per_token.tolist() == [1, 2, 1, 1]  # nodes holding each token's experts
    assert real_routing.cross_node_bytes(m.dispatch, 2) == 3 * H


def test_direct_mode_sends_one_copy_per_remote_gpu():
    m = moe_dispatch(2, 2, experts=4, hidden=H, routing=TABLE, mode="direct")
    # every (token, expert GPU) pair that leaves the sender, NVLink ones included
    assert flows(m.dispatch) == {(0, 2): H, (0, 3): H, (1, 0): H, (1, 2): H, (2, 3): H, (3, 0): H, (3, 1): H}
    assert real_routing.cross_node_bytes(m.dispatch, 2) == 5 * H


def test_two_experts_per_gpu_and_two_tokens_per_gpu():
    # 1 node x 2 GPUs would have no network; 2 nodes x 1 GPU, 4 experts (2 per GPU), 2 tokens per GPU
    table = np.array([[0, 1], [2, 3], [0, 2], [1, 3]])  # GPU 0 sends rows 0-1, GPU 1 rows 2-3
    m = moe_dispatch(2, 1, experts=4, hidden=H, routing=table)
    # row 0: home; row 1: node 1 (two experts, one node); row 2: one each; row 3: one each
    assert m.copies == dict(per_expert=2.0 + 1 + 1, direct=1.0 + 1 + 1, dedup=1.0 + 1 + 1)
    assert flows(m.dispatch) == {(0, 1): H, (1, 0): 2 * H}  # row 1 once; rows 2 and 3 once each


def brute_force(table, experts, n_gpus, gpus_per_node):
    per_gpu = experts // n_gpus
    rows_per_gpu = len(table) // n_gpus
    counts = dict(per_expert=0, direct=0, dedup=0)
    for r, row in enumerate(table.tolist()):
        home = (r // rows_per_gpu) // gpus_per_node
        gpus = [e // per_gpu for e in row]
        nodes = [g // gpus_per_node for g in gpus]
        counts["per_expert"] += sum(n != home for n in nodes)
        counts["direct"] += len({g for g in gpus if g // gpus_per_node != home})
        counts["dedup"] += len({n for n in nodes if n != home})
    return counts


@pytest.fixture(scope="module")
def moe_model():
    cfg = ModelConfig.preset("toy", ffn="moe", n_experts=16, experts_per_token=4, n_expert_groups=4,
                             groups_per_token=2, d_expert=8, first_dense_layers=1)
    return GPT(cfg, seed=0)


def test_a_models_routing_is_counted_like_the_definition(moe_model):
    ids = np.random.default_rng(0).integers(0, 64, size=(8, 16))  # 8 GPUs send 16 tokens each
    tables = real_routing.expert_ids(moe_model, ids)
    assert list(tables) == [1]  # block 0 is dense
    _, cache = moe_model.run_with_cache(ids)
    assert np.array_equal(tables[1], cache["blocks.1.mlp.hook_expert_ids"].reshape(-1, 4))
    report = real_routing.dispatch_report(tables[1], nodes=4, gpus_per_node=2, experts=16, hidden=H, k=8)
    assert report["copies"] == {k: float(v) for k, v in brute_force(tables[1], 16, 8, 2).items()}
    assert report["tokens"] == 128 and report["cross_node_bytes"] == report["copies"]["dedup"] * H
    assert report["mpft_s"] > 0 and report["single_plane_s"] > 0


def test_node_limited_routing_caps_the_copies_at_m_per_token(moe_model):
    ids = np.random.default_rng(1).integers(0, 64, size=(8, 16))
    limited = real_routing.expert_ids(moe_model, ids)[1]
    free_model = GPT(moe_model.config.replace(groups_per_token=4), params=moe_model.params)  # same weights
    free = real_routing.expert_ids(free_model, ids)[1]
    a = real_routing.dispatch_report(limited, 4, 2, 16, hidden=H, k=8)
    b = real_routing.dispatch_report(free, 4, 2, 16, hidden=H, k=8)
    assert a["nodes_per_token"][1] <= 2 < b["nodes_per_token"][1]  # M = 2 nodes at most, and more without
    assert a["copies"]["dedup"] <= 2 * 128 and a["copies"]["dedup"] < a["copies"]["per_expert"]


def test_bad_tables_are_refused_by_name(moe_model):
    with pytest.raises(ValueError, match="outside 0..3; pass experts="):
        moe_dispatch(2, 2, experts=4, hidden=H, routing=np.array([[0, 4]] * 4))
    with pytest.raises(ValueError, match="multiple of the 4 GPUs"):
        moe_dispatch(2, 2, experts=4, hidden=H, routing=TABLE[:3])
    with pytest.raises(ValueError, match="needs? a model with ffn='moe'"):
        real_routing.expert_ids(GPT("toy"), np.array([[1, 2]]))
