# Source of notebooks/13_mixture_of_experts.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 13_mixture`.

# %% [markdown]
# # Stage 5, variant · Mixture of experts · *processing by specialists*
#
# The feed-forward stage processes every position on its own, with one MLP that
# every token shares. A **mixture of experts** (MoE) keeps many MLPs, the
# *experts*, and a small **router** that sends each token to a few of them. The
# model can then hold many more parameters than any one token uses: DeepSeek-V3
# stores 671 billion and uses 37 billion per token.
#
# This notebook builds DeepSeek-V3's MoE layer from `minitransformer.feedforward.moe`:
# the router's equations on hand-sized arrays, then a small model trained on real
# text, where we watch the router collapse onto a few experts, and watch the
# loss-free bias update undo it. We compare a dense model and a MoE model of
# equal active size, by steps and by compute, and finally send the model's own
# routing decisions over the simulated network of notebook 08.
#
# Everything runs offline in about a minute. Run the cells top to bottom.

# %%
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small products: one BLAS thread is fastest here

# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import matplotlib
import numpy as np

from minitransformer.concepts import stage
from minitransformer.core.config import ModelConfig
from minitransformer.feedforward import moe, moe_router
from minitransformer.figures import moe as moe_figures
from minitransformer.kit import compare
from minitransformer.model import GPT
from minitransformer.costs import estimate_flops_per_token
from minitransformer.scaleout import real_routing
from minitransformer.scaleout.model_traffic import deepseek_v3_params_per_gpu
from minitransformer.scaleout.traffic import moe_dispatch
from minitransformer.trace.pipeline import Pipeline
from minitransformer.training import TrainConfig, Trainer, get_batch
from minitransformer.training.data import corpus_tokens

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small


def rule(title):
    print(f"\n{title}\n{'-' * len(title)}")


# %% [markdown]
# ## 1. The concept: processing, by specialists
#
# In the concept table the feed-forward stage is **processing**: after attention
# has retrieved what a position needs, the MLP transforms it. A library answers a
# question by sending it to the right desk: a few specialists, not the whole staff.
# A mixture of experts does the same per token. Which desk a token goes to is itself
# learned, and the danger is the one every library knows: one popular desk with a
# queue, and idle specialists beside it.

# %%
s = stage("feedforward")
print(f"stage {s.number}: {s.name}  ->  concept: {s.concept}")
print(f"question: {s.question}")

# %% [markdown]
# ## 2. The mechanism (DeepSeek-V3, §2.1.2)
#
# For a token $u_t$ (the normalised residual stream), with $E$ routed experts whose
# centroids $e_i$ are the columns of `W_router` and $S$ shared experts:
#
# $$s_{i,t} = \sigma(u_t^\top e_i) \qquad \text{(affinity, in (0, 1))}$$
# $$\text{chosen}_t = \operatorname{TopK}_i\,(s_{i,t} + b_i,\; K) \qquad \text{(the bias } b \text{ only chooses)}$$
# $$g_{i,t} = r\,\frac{s_{i,t}}{\sum_{j \in \text{chosen}_t} s_{j,t}} \quad (i \in \text{chosen}_t)$$
# $$y_t = \sum_{i < S} \mathrm{FFN}^{\text{shared}}_i(u_t) + \sum_{i \in \text{chosen}_t} g_{i,t}\, \mathrm{FFN}_i(u_t)$$
#
# Three details matter. The bias $b$ moves *which* experts are chosen, never the
# gate values, and it is not trained by gradient descent: after each step it is
# nudged, $b_i \mathrel{+}= \gamma\,\mathrm{sign}(\bar c - c_i)$, towards an even
# load $c$ (auxiliary-loss-free balancing). With **groups**, the experts are split
# into equal groups (one per node in DeepSeek's cluster), a group is scored by the
# sum of its two best $s + b$, and a token may only choose among its best $M$
# groups: **node-limited routing**, which caps how many machines a token is sent to.
# And no token is dropped: an expert takes however many tokens choose it.

# %% [markdown]
# ## 3. The router on hand-sized arrays
#
# Four tokens, six experts in three groups of two; $K = 2$.

# %%
scores = np.array([[0.95, 0.05, 0.60, 0.55, 0.50, 0.45],
                   [0.10, 0.20, 0.90, 0.80, 0.30, 0.40],
                   [0.50, 0.50, 0.50, 0.51, 0.49, 0.52],
                   [0.70, 0.65, 0.10, 0.20, 0.60, 0.61]])
b = np.zeros(6)
rule("top-2 of s, no groups")
ids = moe_router.select_experts(scores, b, k=2)
print(ids, "\ngates:\n", moe_router.gate_values(scores, ids).round(3))
rule("one of three groups per token (node-limited)")
print(moe_router.select_experts(scores, b, k=2, n_groups=3, groups_per_token=1))
print("token 0: expert 0 is the best single expert, but its group {0, 1} scores 0.95 + 0.05 = 1.00,"
      "\n         group {2, 3} scores 0.60 + 0.55 = 1.15: the token goes to experts 2 and 3")
rule("a bias of +0.3 on expert 5 changes the choice, not the gates")
b5 = np.array([0, 0, 0, 0, 0, 0.3])
ids5 = moe_router.select_experts(scores, b5, k=2)
print(ids5, "\ngates:\n", moe_router.gate_values(scores, ids5).round(3))

# %% [markdown]
# The layer itself, on a toy config: its output for one token equals the equation,
# written out with the experts' own weights.

# %%
cfg = ModelConfig.preset("toy", ffn="moe", n_experts=6, experts_per_token=2, n_shared_experts=1, d_expert=8)
params = moe.init(cfg, np.random.default_rng(0))
x = np.random.default_rng(1).normal(size=(1, 4, cfg.d_model)).astype(np.float32)  # (B, T, C)
y, cache = moe.forward(params, x, cfg)
print({k: v.shape for k, v in params.items()})
print("experts chosen per token:", cache["hook_expert_ids"][0].tolist())


def silu(z):
    return z / (1 + np.exp(-z))


def expert(u, W_gate, W_in, W_out):  # one SwiGLU expert on one token
    return (silu(u @ W_gate) * (u @ W_in)) @ W_out


u = x[0, 0]
by_hand = expert(u, params["W_gate_shared"], params["W_in_shared"], params["W_out_shared"])
for e, g in zip(cache["hook_expert_ids"][0, 0], cache["hook_gates"][0, 0]):
    by_hand = by_hand + g * expert(u, params["W_gate"][e], params["W_in"][e], params["W_out"][e])
print("max |layer - equation| for token 0:", float(np.abs(y[0, 0] - by_hand).max()))

# %% [markdown]
# ## 4. A small MoE model on real text: the router collapses, the bias undoes it
#
# The model: 2 layers of width 64, and in each MoE layer 32 routed experts in 8
# groups, $K = 8$ per token within at most $M = 4$ groups, plus one shared expert,
# DeepSeek-V3's ratios at a toy size. We train it twice on the Python documentation,
# without the bias update ($\gamma = 0$) and with it, and record after every step
# the load of the busiest expert against the mean (1 is even; $E/K = 4$ means every
# token went to the same $K$ experts). DeepSeek-V3 uses $\gamma = 0.001$ over
# trillions of tokens; a run of a few hundred steps needs a faster nudge, 0.01.
# Both runs collapse within the first 20 steps (every token on the same $K$
# experts, a load of 4), before the bias has had time to build up. Without the
# update the load stays near collapse (3.57 over the last 50 steps); with it,
# the load leaves 4 after about 55 steps and comes down to 1.71 (last 50 steps).

# %%
tokens = corpus_tokens("pydoc", 512, 64)
base = dict(vocab_size=512, context_length=64, d_model=64, n_layers=2, n_heads=4, norm="rmsnorm", bias=False)
MOE = dict(ffn="moe", n_experts=32, experts_per_token=8, n_shared_experts=1, n_expert_groups=8, groups_per_token=4)
STEPS = 240
histories, models = {}, {}
for label, gamma in (("no bias update", 0.0), ("bias update, gamma 0.01", 0.01)):
    model = GPT(ModelConfig(**base, **MOE, balance_speed=gamma), seed=0)
    trainer = Trainer(model, tokens.train, tokens.val,
                      TrainConfig(steps=STEPS, batch_size=8, lr=3e-3, warmup=10, eval_every=0), log=None)
    history = []
    for _ in range(STEPS):
        trainer.train_step()
        history.append(moe.load_imbalance(model.last_expert_load))  # max/mean per MoE layer
    histories[label], models[label] = np.array(history), model
    print(f"{label:>24}: max/mean load over the last 50 steps {histories[label][-50:].mean():.2f}")
print(f"parameters {model.num_params:,}, used per token {model.num_active_params:,}")
moe_figures.load_balance(histories, 32, 8, smooth=5)

# %% [markdown]
# Which experts process which tokens, on a line of real text (the balanced model,
# layer 1). Each row is a token, each column an expert; the colour is its gate.

# %%
balanced = models["bias update, gamma 0.01"]
text = "def area(radius): return 3.14 * radius ** 2"
ids = np.array([tokens.tokenizer.encode(text)])
labels = [tokens.tokenizer.decode([i]) for i in ids[0]]
_, acts = balanced.run_with_cache(ids)
moe_figures.routing_map(acts["expert_ids", 1][0], acts["gates", 1][0], labels, 32, title="layer 1: token x expert")

# %% [markdown]
# The trace describes the same kind of choice in words, in its processing step:
# for each token, the experts it went to and their gates. It traces a shorter
# text, `return radius`, and its first lines show layer 0, so its experts are
# not the ones in the map above (layer 1).

# %%
final = Pipeline(tokens.tokenizer, balanced).trace("return radius")[-1]
print("\n".join(final.describe().splitlines()[:8]))

# %% [markdown]
# ## 5. Dense against MoE, at equal active parameters
#
# `moe.dense_equivalent` gives a dense SwiGLU model whose MLP is as wide as the
# $K + S$ experts a token uses, so both spend the same compute per token (up to the
# router). `kit.compare` trains both on the same tokens from the same seed. The
# right panel puts compute, not steps, on the x axis (3 x `estimate_flops_per_token`
# x tokens): a MoE model's advantage is more parameters for the same FLOPs.

# %%
moe_cfg = ModelConfig(**base, **MOE, balance_speed=0.01)
dense_cfg = moe.dense_equivalent(moe_cfg)
print(f"dense MLP width {dense_cfg.ff_width} = (K + S) x {moe_cfg.expert_width}; FLOPs per token: "
      f"dense {estimate_flops_per_token(dense_cfg):,}, MoE {estimate_flops_per_token(moe_cfg):,}")
result = compare({"MoE": moe_cfg, "dense": dense_cfg}, steps=STEPS, batch_size=8, eval_every=40)
print(result.table())
moe_figures.dense_vs_moe(result, tokens_per_step=8 * 64)

# %% [markdown]
# At this size and length the two end close together, and the dense model can
# even be ahead (the table above): each expert sees only about $K/E$ of the
# tokens, so in a few hundred steps it has had few lessons of its own, and the
# router is still settling. The extra parameters pay off with many more tokens
# than a notebook can afford; what this run does show is their price: the same
# FLOPs, about 2.5 times the parameters to store, and in numpy about half the
# speed (a loop over experts with small matrices, where the dense model has one
# large product).

# %% [markdown]
# ## 6. The model's own routing on the network
#
# Place the 32 experts on 8 nodes of 4 GPUs, one expert per GPU, the expert groups
# being the nodes, and let each of the 32 GPUs send 64 tokens of held-out text
# through layer 1. A token's copy to every remote expert would be about $K$ network
# copies per token (the report's $8t$); sending one copy per remote *node* and
# fanning out over NVLink caps it at $M$ (the report's $Mt$). Without the node limit
# (the same weights, any group allowed) tokens reach more nodes. The times are one
# layer's dispatch and combine for DeepSeek-sized tokens (7,168 elements) on the
# multi-plane fat-tree and on a single plane shared by all rails.

# %%
x_val, _ = get_batch(tokens.val, 32, 64, np.random.default_rng(1))  # (32 GPUs, 64 tokens)
limited = real_routing.expert_ids(balanced, x_val)[1]
free_model = GPT(balanced.config.replace(groups_per_token=8), params=balanced.params)  # no node limit
free = real_routing.expert_ids(free_model, x_val)[1]
reports = {name: real_routing.dispatch_report(table, nodes=8, gpus_per_node=4, experts=32, k=8)
           for name, table in (("node-limited, M = 4", limited), ("no limit", free))}
for name, r in reports.items():
    c = r["copies_per_token"]
    print(f"{name:>20}: copies/token per expert {c['per_expert']:.2f}, per node {c['dedup']:.2f}; nodes/token "
          f"max {r['nodes_per_token'][1]}; cross-node {r['cross_node_bytes'] / 1e6:.1f} MB; "
          f"MPFT {r['mpft_s'] * 1e6:.0f} us, one plane {r['single_plane_s'] * 1e6:.0f} us")
moe_figures.routed_traffic(reports)

# %% [markdown]
# The two networks finish together: with one NIC per GPU either way and no failed
# link, the planes change cost and fault isolation, not bandwidth (the ISCA paper
# found the same on real hardware). What the node limit and the per-node copy save
# is bytes, and with them time.

# %% [markdown]
# ## 7. Pitfalls
#
# - **The bias is not a weight.** It chooses, it does not scale: a gradient step
#   cannot move it (its gradient is zero: the choice is a step function), and a
#   gate computed from $s + b$ would let the balancing term distort the output.
# - **Collapse happens early.** Within a few dozen steps the router can send almost
#   every token to the same $K$ experts; the others then get almost no gradient,
#   and the load stays near collapse (3.57 at the end of section 4's run without
#   the bias update).
# - **Measure load where it is decided.** A batch of contiguous text is not a
#   random sample of tokens: per-batch loads are noisier than the long-run load.
# - **"Parameters" is two numbers.** `num_params` counts every expert; compute and
#   memory bandwidth per token follow `num_active_params`.
# - **Groups are nodes only if you place them so.** Node-limited routing saves
#   traffic only when an expert group lives on one node.

# %% [markdown]
# ## 8. Exercises
#
# Each exercise has a stub and a check. A stub raises `NotImplementedError` and its
# check prints *not done yet*, so the notebook still runs top to bottom.
#
# - **core 1**: gate values by hand.
# - **core 2**: count a routing table's network copies.
# - **stretch 3**: DeepSeek-V3's routed-expert parameters.

# %%
def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# **Core 1.** Given affinities `s (N, E)`, chosen experts `ids (N, K)`, a scaling
# `r` and whether to normalise, return the gates `(N, K)` as in section 2.

# %%
def my_gates(s, ids, r, normalize):
    raise NotImplementedError  # your code here


def test_gates():
    rng = np.random.default_rng(3)
    s = rng.random((20, 8))
    ids = moe_router.select_experts(s, rng.normal(0, 0.1, 8), k=3)
    for r, normalize in ((1.0, True), (2.5, True), (2.5, False)):
        assert np.allclose(my_gates(s, ids, r, normalize), moe_router.gate_values(s, ids, r, normalize))


check("core 1 (gates)", test_gates)

# %% [markdown]
# **Core 2.** Experts `0..E-1` sit on `nodes` nodes, `E / nodes` each; token `r` of
# a table `(n, K)` is sent from node `r // (n / nodes)`. Return how many network
# copies the whole table needs when each token sends one copy per remote *node*
# that holds one of its experts.

# %%
def node_copies(table, experts, nodes):
    raise NotImplementedError  # your code here


def test_node_copies():
    table = np.array([[2, 3], [0, 2], [2, 3], [0, 1]])
    assert node_copies(table, 4, 2) == 3
    rng = np.random.default_rng(0)
    big = rng.integers(0, 16, size=(64, 4))
    assert node_copies(big, 16, 4) == moe_dispatch(4, 1, experts=16, hidden=1, routing=big).copies["dedup"]


check("core 2 (node copies)", test_node_copies)

# %% [markdown]
# **Stretch 3.** DeepSeek-V3 has 58 MoE layers of 256 routed SwiGLU experts, hidden
# size 7,168 and expert width 2,048. How many parameters are routed experts, and
# what fraction of them does one token use ($K = 8$)?

# %%
def v3_routed():
    """Return (routed_expert_parameters, fraction_used_per_token)."""
    raise NotImplementedError  # your code here


def test_v3():
    routed, used = v3_routed()
    assert routed == deepseek_v3_params_per_gpu()["routed"]
    assert abs(used - 8 / 256) < 1e-12


check("stretch 3 (V3 routed experts)", test_v3)

# %% [markdown]
# ## 9. Further reading
#
# - DeepSeek-AI (2024). *DeepSeek-V3 Technical Report*, §2.1.2 (sigmoid affinities,
#   auxiliary-loss-free balancing, node-limited routing), §3.2.2 (dispatch),
#   arXiv:2412.19437.
# - D. Dai et al. (2024). *DeepSeekMoE: Towards Ultimate Expert Specialization in
#   Mixture-of-Experts Language Models* (fine-grained and shared experts).
# - L. Wang et al. (2024). *Auxiliary-Loss-Free Load Balancing Strategy for
#   Mixture-of-Experts*.
# - N. Shazeer et al. (2017). *Outrageously Large Neural Networks: The Sparsely-Gated
#   Mixture-of-Experts Layer*.
# - C. Zhao et al. (2025). *Insights into DeepSeek-V3*, ISCA, §4.3 and §5.1.
#
# In the package: `minitransformer/feedforward/moe.py` and `moe_router.py` (both
# paths, the backward, the balancing), `figures/moe.py`, `scaleout/real_routing.py`,
# `interop/deepseek_moe.py` (DeepSeek-V3 checkpoints), and `tests/test_moe.py`.
