# Source of notebooks/08_scale_out_network.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 08_scale`.

# %% [markdown]
# # Scale-out · DeepSeek-V3's multi-plane fat-tree
#
# A model like DeepSeek-V3 is not trained on one machine. It is trained on
# thousands of GPUs that must exchange gradients after every step and tokens
# inside every mixture-of-experts (MoE) layer. This notebook follows the story
# of *Insights into DeepSeek-V3* (ISCA 2025, §4–5): how 16,384 GPUs can be wired
# so that any two are at most **two switch layers** apart, what routing does to
# the traffic of training, how node-limited expert routing keeps MoE traffic
# small, what a failed switch changes, and why many machines in parallel beat one
# faster machine.
#
# Everything is simulated by `minitransformer.scaleout` (numpy only) at the level
# of **flows**: each flow is (source GPU, destination GPU, bytes); routing says
# which links it crosses; the busiest link decides how long the whole pattern
# takes. No packets, no queues: that keeps every number checkable by hand.
# Run the cells top to bottom; it takes well under a minute.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import time

import matplotlib
import numpy as np

from minitransformer.core.config import ModelConfig
from minitransformer.scaleout import metrics
from minitransformer.figures import scaleout as plots
from minitransformer.scaleout.model_traffic import count_params, ep_time_per_layer, speedup_curve, step_traffic, time_per_output_token
from minitransformer.scaleout.routing import POLICIES, route
from minitransformer.scaleout.costs import ft3_switch_hops, table3
from minitransformer.scaleout.topology import ft2, ideal_mpft, mpft, mrft
from minitransformer.scaleout.traffic import Traffic, alltoall_uniform, moe_dispatch, permutation, ring_allreduce

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small

# %% [markdown]
# ## 1. From one GPU to 16,384
#
# One H800 GPU does a few hundred TFLOP/s. Training a 671B-parameter model on
# 14.8 trillion tokens needs about $6 \cdot 37\text{B} \cdot 14.8\text{T} \approx
# 3.3 \times 10^{24}$ FLOPs (37B parameters are active per token): about 260
# years on one GPU at 400 TFLOP/s. Making one device faster (*scale-up*, the
# "legacy" path) buys a factor of two per hardware generation. Using $n$ devices
# (*scale-out*) divides the compute by $n$, but adds communication. Whether
# scale-out wins depends on the network, and that is what this notebook measures.

# %%
flops = 6 * 37e9 * 14.8e12
print(f"training compute: {flops:.2e} FLOPs")
print(f"one GPU at 400 TFLOP/s: {flops / 400e12 / 3600 / 24 / 365:.0f} years")
print(f"DeepSeek-V3's reported 2.788 M H800 GPU-hours: {2.788e6 / 2048 / 24:.0f} days on 2,048 GPUs "
      f"({flops / 2.788e6 / 3600 / 1e12:.0f} TFLOP/s achieved per GPU)")

# %% [markdown]
# ## 2. Leaf and spine: the two-layer fat-tree
#
# Take switches with $k$ ports. A **leaf** switch gives $k/2$ ports to
# endpoints (a GPU's network card, NIC) and $k/2$ ports up, one to each of $k/2$
# **spine** switches. Each spine has $k$ ports, one to each of $k$ leaves. So
#
# $$\text{endpoints} = k \cdot \tfrac{k}{2} = \tfrac{k^2}{2}, \qquad
# \text{switches} = k + \tfrac{k}{2} = \tfrac{3k}{2}, \qquad
# \text{switch links} = k \cdot \tfrac{k}{2}.$$
#
# Any two endpoints are at most three switches apart (leaf, spine, leaf), and the
# tree is *non-blocking*: as many uplinks as downlinks, so half the endpoints can
# talk to the other half at full speed. Here is the smallest one, $k = 4$:

# %%
small = ft2(4)
print(small)
plots.topology(small, title="FT2, k = 4: 4 leaves, 2 spines, 8 endpoints")

# %% [markdown]
# With the 64-port InfiniBand switches DeepSeek used, one such tree holds
# $64^2/2 = 2{,}048$ endpoints. To go further with a classical design you add a
# third switch layer (FT3: $k^3/4 = 65{,}536$ endpoints, but 5 switch hops and
# many more switches per endpoint).

# %%
for k in [4, 8, 16, 32, 64]:
    c = ft2(k).counts()
    print(f"k = {k:2d}: {c['endpoints']:5d} endpoints, {c['switches']:3d} switches, {c['links']:5d} switch links")

# %% [markdown]
# ## 3. Planes: eight trees instead of one bigger tree
#
# DeepSeek's idea: a node has 8 GPUs and 8 NICs, and **GPU $i$'s NIC belongs to
# network plane $i$**. Each plane is its own two-layer fat-tree. Eight planes of
# 2,048 endpoints give $8 \cdot 2{,}048 = 16{,}384$ GPUs, still two switch layers
# apart. The catch: GPU 0 of one node can reach GPU 3 of another node only through
# another GPU of one of the two nodes, over NVLink inside the node (the *forward
# hop*). Below: 2 planes (blue, red), 4 nodes of 2 GPUs; compare the multi-rail
# fat-tree (MRFT), where the rails share one spine layer.

# %%
plots.topology(mpft(4, planes=2, nodes=4), title="MPFT: 2 planes, each a k = 4 leaf/spine tree")

# %%
plots.topology(mrft(4, rails=2, nodes=4), title="MRFT: 2 rails with their own leaves, one shared spine layer")

# %%
full = mpft(64)
print(full)
print(f"GPUs per leaf group: {full.k // 2} nodes x 8 GPUs = {full.k // 2 * 8}")

# %% [markdown]
# ## 4. The paper's Table 3, reproduced
#
# Counts of endpoints, switches and switch-to-switch links follow from the
# construction. Slim Fly (SF) and Dragonfly (DF) are not built here; their rows
# come from their published formulas with parameters fitted to the table
# ($q = 28$ for SF; $a = 32, p = h = 16, g = 511$ for DF; the paper does not state
# them). Costs use a flat price per switch and per link fitted to the FT2 and FT3
# rows, so those two and MPFT are exact and SF/DF only approximate (the paper's
# model, from the Slim Fly paper, prices cables by length).

# %%
paper = {"FT2": (2048, 96, 2048, 9, 4.39), "MPFT": (16384, 768, 16384, 72, 4.39),
         "FT3": (65536, 5120, 131072, 491, 7.5), "SF": (32928, 1568, 32928, 146, 4.4),
         "DF": (261632, 16352, 384272, 1522, 5.8)}
rows = table3()
print(f"{'':5}{'endpoints':>10}{'switches':>9}{'links':>9}{'cost M$':>9}{'paper':>7}{'k$/endpoint':>12}{'paper':>7}  counts")
for name, row in rows.items():
    e, s, l, cost, cpe = paper[name]
    same = (row["endpoints"], row["switches"], row["links"]) == (e, s, l)
    print(f"{name:5}{row['endpoints']:>10,}{row['switches']:>9,}{row['links']:>9,}{row['cost_usd'] / 1e6:>9.1f}{cost:>7}"
          f"{row['cost_per_endpoint_usd'] / 1e3:>12.2f}{cpe:>7}  {'exact' if same else 'DIFFERENT'}")
    assert same

# %% [markdown]
# ## 5. Hops and latency
#
# Fewer switch layers means fewer hops. Same leaf: 1 switch; across leaves: 3;
# a three-layer tree across pods: 5. On MPFT a cross-plane flow adds one NVLink
# hop. Latencies below are the paper's measured inputs (Table 5, IB: 2.8 µs same
# leaf, 3.7 µs across leaves, NVLink 3.33 µs); the FT3 figure is an
# extrapolation, not a measurement.

# %%
topo = mpft(8, nodes=8)  # 4 nodes per leaf group
flows = Traffic([0, 0, 0, 0, 0], [1, 8, 40, 9, 41], np.ones(5))
r = route(topo, flows)
what = ["same node", "same leaf, same plane", "other leaf, same plane", "same leaf, other plane",
        "other leaf, other plane"]
for w, s, n, lat in zip(what, r.switch_hops, r.nvlink_hops, metrics.latency_us(r)):
    print(f"{w:<26} switches {s}, NVLink hops {n}, ~{lat:.2f} µs")
print("FT3 (k=64), same edge / same pod / other pod:", ft3_switch_hops(64, [0, 0, 0], [1, 100, 60000]).tolist(),
      f"switches; cross-pod ~{metrics.LATENCY_US['ib_cross_pod_extrapolated']} µs (extrapolated)")

# %% [markdown]
# ## 6. Routing: ECMP collisions vs adaptive routing
#
# A flow between two leaves can take any of the $k/2$ spines. How the spine is
# chosen is the routing policy:
#
# - **ECMP** hashes (source, destination, flow id) to a spine: cheap and
#   stateless, but blind to load, so equal flows collide;
# - **static** (destination mod $k/2$): a fixed table, perfect for fixed patterns;
# - **adaptive** (AR): each leaf puts the next flow on its least-loaded path;
# - **spray**: every flow split over all spines (packet spraying).
#
# The paper's Fig. 8 shows ECMP losing bandwidth on all-gather / reduce-scatter.
# Here a data-parallel ring all-reduce, one ring per plane, with the nodes ordered
# so that every ring hop crosses the spines; then a uniform all-to-all, a
# random permutation, and an MoE dispatch whose 256 experts are spread over 32
# nodes under 8 leaves. Times are relative to the best any routing could do.

# %%
topo = mpft(16, nodes=128)  # 1,024 GPUs, 8 planes of 16 leaves x 8 spines
patterns = {
    "ring all-reduce": (topo, ring_allreduce(128, 8, 1e9, "rail", interleave=8)),
    "all-to-all": (mpft(8, nodes=32), alltoall_uniform(256, 1e6)),
    "permutation (1 plane)": (ft2(16), permutation(128, 1e9, seed=1)),
    "MoE dispatch": (mpft(8, nodes=32), moe_dispatch(32, 8, ep_nodes=32, tokens_per_gpu=64).dispatch),
}
ratios, profiles = {}, {}
t0 = time.perf_counter()
for name, (tp, tr) in patterns.items():
    routed = {p: route(tp, tr, p) for p in POLICIES}
    best = min(metrics.completion_time(x) for x in routed.values())
    ratios[name] = {p: metrics.completion_time(x) / best for p, x in routed.items()}
    if name == "ring all-reduce":
        profiles = {p: metrics.uplink_loads(x) for p, x in routed.items()}
print(f"routed {len(patterns)} patterns x 4 policies in {time.perf_counter() - t0:.1f} s")
plots.grouped_bars(ratios, ylabel="completion time / best", reference=1.0,
                   title="routing policies on collective and stress traffic")

# %% [markdown]
# On the ring, each of the 128 leaves sends 8 equal flows up to its 8 spines.
# Adaptive and static routing give each flow its own uplink; ECMP's hash puts
# several on one, and the ring waits for the slowest. Hashing 8 flows onto 8
# uplinks puts about 2.6 on the busiest one on average, but the ring waits for
# the worst of all 128 leaves: here 11 uplinks carry 4 flows each, a 4×
# slowdown for the whole ring from bad luck alone, while a third of the uplinks
# carry none (the profile below). Static routing is as good as AR on the fixed
# collective but bad on a permutation it was not designed for; flow-level AR
# beats ECMP but not packet spraying, because two leaves can still pick the
# same spine toward one destination leaf. On the near-uniform all-to-all and
# MoE traffic every policy but ECMP is limited by the NICs, not the spines:
# many small flows average out.

# %%
plots.uplink_profiles(profiles, title="ring all-reduce: uplink loads, busiest first")

# %% [markdown]
# ## 7. Crossing planes: MPFT vs MRFT for all-to-all
#
# In an all-to-all, 7 of every 8 bytes between nodes go to a GPU on another
# plane. MPFT sends them over NVLink first (NCCL's PXN), MRFT through the shared
# spines, and the ideal multi-port NIC sprays each flow over all planes. The
# paper measured MPFT and MRFT all-to-all as nearly identical (Figs. 5–6). The
# simulator says why: NVLink (160 GB/s) is ~3× faster than the NIC (50 GB/s), so
# the forward hop is never the bottleneck. Slow NVLink down to 10 GB/s and MPFT
# falls behind.

# %%
a2a = alltoall_uniform(128, 1e6)
fabrics = {"MRFT": mrft(16, rails=8, nodes=16), "MPFT (PXN)": mpft(16, nodes=16),
           "ideal multi-port": ideal_mpft(16, nodes=16), "MPFT, NVLink 10 GB/s": mpft(16, nodes=16, nvlink_gbps=10.0)}
times = {name: metrics.completion_time(route(f, a2a, "adaptive")) for name, f in fabrics.items()}
for name, t in times.items():
    print(f"{name:<22} {t * 1e3:6.3f} ms  ({t / times['MRFT']:.2f} x MRFT)")
print(f"cross-plane share of the bytes: {metrics.cross_plane_fraction(route(fabrics['MPFT (PXN)'], a2a)):.3f}")

# %% [markdown]
# ## 8. MoE dispatch with node-limited routing
#
# Each DeepSeek-V3 token goes to 8 of 256 routed experts (plus a shared one).
# The experts of a 64-way expert-parallel group sit on 8 nodes, 32 per node.
# Sending a token once per expert would cost 8 network copies (the paper's
# $8t$). **Node-limited routing** first picks the $M = 4$ nodes with the best
# sum of their top-2 expert scores, and only then the top 8 experts on those
# nodes. The token crosses the network **once per node**, to the GPU with the
# sender's own index (so it stays in the sender's plane), and NVLink fans it out:
# at most $Mt$ copies.

# %%
moe = moe_dispatch(8, 8, experts=256, top_k=8, max_nodes=4, tokens_per_gpu=256, seed=0)
print(f"{moe.tokens:,} tokens; nodes reached per token: {np.bincount(moe.nodes_per_token)[1:].tolist()} (1..4)")
for key in ["per_expert", "direct", "dedup"]:
    print(f"  network copies per token, {key:<10}: {moe.copies[key] / moe.tokens:.2f}")
r = route(mpft(8, nodes=8), moe.dispatch)
print(f"cross-plane network traffic: {metrics.cross_plane_fraction(r):.0%};  "
      f"dispatch takes {metrics.completion_time(r) * 1e6:.0f} µs, "
      f"{metrics.per_gpu_bandwidth(r):.0f} GB/s per GPU counting NVLink-local bytes "
      f"({metrics.per_gpu_bandwidth(r, network_only=True):.0f} over the network)")

# %% [markdown]
# The paper reports DeepEP dispatch at more than 40 GB/s per GPU, "nearly
# saturating" the 50 GB/s NIC; like ours, that is a *logical* bandwidth that
# counts bytes delivered inside the node too. As $M$ grows, copies per token
# grow toward $M$ (one node is the sender's own and costs nothing), while one
# copy per expert stays near 7 whatever $M$ is:

# %%
curves = metrics.ib_bytes_per_token([1, 2, 3, 4, 6, 8], tokens_per_gpu=64)
plots.bytes_per_token(curves)

# %% [markdown]
# ## 9. Fault isolation: a failed spine stays in its plane
#
# Fail one spine of plane 3 and route the same all-to-all again. Only plane 3's
# links change; the other seven planes carry exactly the same bytes as before.
# In a single big tree, the same failure would shift traffic everywhere.

# %%
tp = mpft(8, nodes=16)
out = metrics.failure_experiment(tp, alltoall_uniform(tp.n_gpus, 1e6), plane=3, spine=1, policy="adaptive")
print("planes whose links changed:", out["planes_changed"])
print(f"completion time {out['time_before'] * 1e3:.3f} ms -> {out['time_after'] * 1e3:.3f} ms")
plots.failure(out["per_plane_max_before"], out["per_plane_max_after"])

# %%
plots.topology(mpft(4, planes=2, nodes=4).fail_spine(1, 0), title="spine 0 of plane 1 failed (x): plane 0 is untouched")

# %% [markdown]
# ## 10. The paper's arithmetic for expert parallelism in inference
#
# ISCA §2.3.2: with 32 tokens per device, 9 experts per token (1 shared + 8
# routed), a hidden size of "7K", FP8 dispatch (1 byte) and BF16 combine
# (2 bytes) over a 50 GB/s NIC, one layer's communication takes
#
# $$\frac{(1 + 2)\,\text{B} \cdot 32 \cdot 9 \cdot 7\text{K}}{50\ \text{GB/s}} = 120.96\ \mu\text{s},$$
#
# and with two micro-batches over 61 layers, 14.76 ms per output token. (The
# paper's 7K is 7,000 there; with the true 7,168 it is 123.86 µs.)

# %%
layer = ep_time_per_layer()
print(f"EP time per layer: {layer * 1e6:.2f} µs;  TPOT: {time_per_output_token() * 1e3:.2f} ms "
      f"({1 / time_per_output_token():.1f} tokens/s);  with hidden 7168: {ep_time_per_layer(hidden=7168) * 1e6:.2f} µs")

# %% [markdown]
# ## 11. Tie it to the model: what a step sends, and legacy vs scale-out
#
# A data-parallel step all-reduces every gradient. For our `small` model that is
# about 12 MB; for DeepSeek-V3 (non-expert parameters, plus 1/64 of the experts per
# GPU) it is tens of GB, and every MoE layer also dispatches and combines its
# tokens. The simulator gives the time each needs on a 512-GPU MPFT.

# %%
cluster = mpft(64, nodes=64)
ours = step_traffic(ModelConfig.preset("small"), topo=cluster)
v3 = step_traffic("deepseek-v3", tokens_per_gpu=4096, topo=cluster, pool=2048)
print(f"ours (small, {count_params(ModelConfig.preset('small')):,} params): all-reduce {ours['allreduce_bytes'] / 1e6:.1f} MB "
      f"in {ours['allreduce_time_s'] * 1e3:.2f} ms")
print(f"DeepSeek-V3: all-reduce {v3['allreduce_bytes'] / 1e9:.1f} GB per GPU in {v3['allreduce_time_s']:.2f} s; "
      f"one MoE layer: dispatch {v3['dispatch_bytes_per_gpu'] / 1e6:.0f} MB/GPU in {v3['dispatch_time_s'] * 1e3:.2f} ms, "
      f"combine {v3['combine_time_s'] * 1e3:.2f} ms ({v3['moe_layers']} such layers per pass)")

# %% [markdown]
# Now the comparison. One training step of a V3-sized model on 16M tokens, one
# device at 400 TFLOP/s, against $n$ devices that must all-reduce the gradients
# through the simulated network (hierarchical: NVLink inside nodes, one ring per
# plane between them). The legacy path is one device twice as fast. Scale-out
# keeps winning, but each doubling buys less once communication is a large share
# of the step; overlapping it with computation pushes the knee out.

# %%
devices = [1, 2, 4, 8, 64, 512, 2048, 16384]
kw = dict(step_flops=6 * 37e9 * 16e6, grad_bytes_total=v3["allreduce_bytes"], legacy_factor=2.0)
curve = speedup_curve(devices, **kw)
curve["scale_out_overlap"] = speedup_curve(devices, overlap=True, **kw)["scale_out"]
for n, s, e in zip(curve["devices"], curve["scale_out"], curve["efficiency"]):
    print(f"{n:6d} devices: speed-up {s:8.1f} (efficiency {e:.0%})")
plots.speedup(curve)

# %% [markdown]
# ## 12. Pitfalls
#
# - **Fluid time is a lower bound.** The completion time is the busiest link's
#   bytes over its capacity; real networks add latency, congestion control and
#   incast. Comparisons between policies are meaningful; absolute times are optimistic.
# - **"Bandwidth per GPU" depends on what you count.** DeepEP's >40 GB/s counts
#   bytes delivered over NVLink too; the network alone carries less.
# - **MPFT's cross-plane traffic is free only while NVLink is fast.** The forward
#   hop shares NVLink with tensor-parallel and expert traffic inside the node.
# - **ECMP's damage is luck.** Another seed, another collision pattern: look at
#   distributions over seeds, not one run.
# - **SF and DF rows are fits.** The paper does not give their parameters; q = 28
#   is not even a prime power, so that Slim Fly cannot actually be built.

# %% [markdown]
# ## 13. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`
# (or leaves `None`), and its check prints *not done yet*, so the notebook still
# runs top to bottom. Replace the stub, re-run the check, and aim for *passed*.
#
# - **core 1**: count a fat-tree.
# - **core 2**: count network copies under node-limited routing.
# - **optional 3**: the expected worst uplink under random hashing.
# - **stretch 4**: the smallest switch that reaches 100,000 GPUs in two layers.

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
# **Core 1.** Write `my_ft2_counts(k)` returning `(endpoints, switches, links)`
# of a two-layer fat-tree of `k`-port switches (links: switch-to-switch cables only).

# %%
def my_ft2_counts(k):
    raise NotImplementedError  # your code here


def test_ft2_counts():
    for k in [4, 8, 16, 32, 64, 128]:
        c = ft2(k).counts()
        assert my_ft2_counts(k) == (c["endpoints"], c["switches"], c["links"]), f"k={k}"


check("core 1 (my_ft2_counts)", test_ft2_counts)

# %% [markdown]
# **Core 2.** A token on node `src_node` goes to experts `experts` (a list of 8
# ids; expert `e` lives on node `e // 32`). Write `my_copies(experts, src_node)`
# returning `(per_expert, dedup)`: network copies if each remote *expert* gets its
# own copy, and if each remote *node* gets one.

# %%
def my_copies(experts, src_node):
    raise NotImplementedError  # your code here


def test_copies():
    assert my_copies([0, 1, 40, 41, 42, 100, 200, 201], 0) == (6, 3)
    m = moe_dispatch(8, 8, tokens_per_gpu=16, seed=5)
    src = (np.arange(m.tokens) // 16) // 8  # tokens are ordered by source GPU
    per_expert, dedup = zip(*(my_copies(row, s) for row, s in zip(m.experts.tolist(), src)))
    assert (sum(per_expert), sum(dedup)) == (m.copies["per_expert"], m.copies["dedup"])


check("core 2 (my_copies)", test_copies)

# %% [markdown]
# **Optional 3.** ECMP behaves like throwing `n` flows at random into `n`
# uplinks. Write `expected_worst(n, trials, rng)`: the average, over `trials`
# random throws, of the largest number of flows on one uplink. For n = 32 it
# should be about 3.5, and agree with what ECMP does to the 32 flows one leaf
# sends up its 32 uplinks on a ring where every hop crosses the spines.

# %%
def expected_worst(n, trials, rng):
    raise NotImplementedError  # your code here


def test_expected_worst():
    est = expected_worst(32, 2000, np.random.default_rng(0))
    assert 3.2 < est < 3.8, est
    tp = mpft(64, planes=1, nodes=64)
    ring = ring_allreduce(64, 1, 1.0, "rail", interleave=32)
    # the worst of leaf 0's 32 uplinks, in flows, over 100 hash seeds
    ecmp = np.mean([metrics.uplink_loads(route(tp, ring, "ecmp", seed=s))[0].max() / ring.bytes[0] for s in range(100)])
    assert abs(ecmp - est) < 0.4, (ecmp, est)


check("optional 3 (expected_worst)", test_expected_worst)

# %% [markdown]
# **Stretch 4.** With 8 planes and 8 GPUs per node, what is the smallest even
# switch radix `k` whose two-layer MPFT reaches at least 100,000 GPUs, and how
# many switches does it need? Set `MY_K` and `MY_SWITCHES`.

# %%
MY_K = None
MY_SWITCHES = None


def test_radix():
    if MY_K is None or MY_SWITCHES is None:
        raise NotImplementedError
    assert 8 * MY_K ** 2 // 2 >= 100_000 and 8 * (MY_K - 2) ** 2 // 2 < 100_000, "not the smallest even k"
    assert mpft(MY_K, nodes=MY_K ** 2 // 2).counts()["switches"] == MY_SWITCHES


check("stretch 4 (radix)", test_radix)

# %% [markdown]
# ## 14. Further reading
#
# - Chenggang Zhao et al. (2025). *Insights into DeepSeek-V3: Scaling Challenges
#   and Reflections on Hardware for AI Architectures.* ISCA 2025,
#   arXiv:2505.09343. §4–5 and Tables 3–5: the network this notebook simulates.
# - DeepSeek-AI (2024). *DeepSeek-V3 Technical Report*, arXiv:2412.19437, §2.1.2
#   (node-limited routing) and §3.2.2 (cross-node all-to-all).
# - Mohammad Al-Fares, Alexander Loukissas, Amin Vahdat (2008). *A Scalable,
#   Commodity Data Center Network Architecture.* SIGCOMM. The k-ary fat-tree.
# - Maciej Besta, Torsten Hoefler (2014). *Slim Fly.* SC14; John Kim et al.
#   (2008). *Technology-Driven, Highly-Scalable Dragonfly Topology.* ISCA.
# - DeepEP (github.com/deepseek-ai/DeepEP): the dispatch/combine kernels whose
#   same-index forwarding the `dedup` mode models.
#
# In the package: `minitransformer/scaleout/topology.py` (builders), `costs.py`
# (Table 3), `routing.py`, `traffic.py`, `metrics.py`, `model_traffic.py` and `figures/scaleout.py`.
