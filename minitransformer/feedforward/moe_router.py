"""The router of the mixture of experts: which experts see a token, and with what weight.

DeepSeek-V3's gate (DeepSeek-AI, 2024, "DeepSeek-V3 Technical Report", section 2.1.2),
written as small functions with their backward, used by `moe`:

    s_{i,t}  = sigmoid(u_t . e_i)                           affinity of token t to expert i
    chosen   = TopK_i(s_{i,t} + b_i, K)                     b: a per-expert bias, for choosing only
    g_{i,t}  = r * s_{i,t} / sum_{j in chosen} s_{j,t}      for i in chosen (0 otherwise)

``e_i`` is column i of ``W_router (C, E)``, ``r`` the routed scaling. The bias ``b``
moves which experts are chosen but never the gate values, and it is not trained by
gradient descent: `update_bias` nudges it after each step towards an even load
("auxiliary-loss-free load balancing"). With ``n_groups > 1`` the experts are split
into equal groups, each group is scored by the sum of its two best ``s + b``, and a
token chooses its K experts among the best ``groups_per_token`` groups only
(node-limited routing, which caps how many machines a token is sent to).

The optional sequence-wise balance loss (the report's equations 17-20) is here too:
``alpha * sum_i f_i P_i`` per sequence, with ``f_i`` the (scaled) fraction of the
sequence's tokens that chose expert i and ``P_i`` the mean normalised affinity.

Dimension letters: N tokens (B*T rows), C width, E routed experts, K experts per token,
G expert groups.
"""

from __future__ import annotations

import numpy as np

from ..core import nn


# --------------------------------------------------------------------------- forward
def scores(u: np.ndarray, W_router: np.ndarray) -> np.ndarray:
    """Affinities ``s = sigmoid(u @ W_router)``: ``u (N, C) -> s (N, E)``, each in (0, 1)."""
    return nn.sigmoid(u @ W_router)  # (N, C) @ (C, E) -> (N, E)


def select_experts(s: np.ndarray, b: np.ndarray, k: int, n_groups: int = 1, groups_per_token: int = 1) -> np.ndarray:
    """The K experts of each token, best first: ``s (N, E), b (E,) -> ids (N, K) int64``.

    Chosen by ``s + b``; with ``n_groups > 1`` only inside the ``groups_per_token`` groups
    whose two best ``s + b`` sum highest.

    >>> s = np.array([[0.9, 0.1, 0.5, 0.6]])
    >>> select_experts(s, np.zeros(4), k=2)
    array([[0, 3]])
    >>> select_experts(s, np.array([0.0, 0.0, 0.5, 0.0]), k=2)   # the bias promotes expert 2
    array([[2, 0]])
    >>> select_experts(s, np.zeros(4), k=2, n_groups=2)          # groups {0,1}: 1.0, {2,3}: 1.1
    array([[3, 2]])
    """
    choice = s + b  # (N, E): used to choose, never as a weight
    N, E = choice.shape
    if n_groups > 1:
        grouped = choice.reshape(N, n_groups, E // n_groups)  # (N, E) -> (N, G, E/G)
        # a group's score is the sum of its two best experts (not its best one alone)
        top2 = np.partition(grouped, E // n_groups - 2, axis=-1)[..., -2:]  # (N, G, 2)
        group_score = top2.sum(axis=-1)  # (N, G)
        best_groups = np.argsort(-group_score, axis=-1, kind="stable")[:, :groups_per_token]  # (N, Kg)
        allowed = np.zeros((N, n_groups), bool)
        np.put_along_axis(allowed, best_groups, True, axis=-1)
        allowed = np.repeat(allowed, E // n_groups, axis=-1)  # (N, G) -> (N, E)
        choice = np.where(allowed, choice, -np.inf)  # experts of other groups cannot be chosen
    return np.argsort(-choice, axis=-1, kind="stable")[:, :k].astype(np.int64)  # (N, E) -> (N, K)


def gate_values(s: np.ndarray, ids: np.ndarray, scaling: float = 1.0, normalize: bool = True) -> np.ndarray:
    """Gates of the chosen experts: ``s (N, E), ids (N, K) -> g (N, K)``.

    ``g = scaling * s_chosen / sum(s_chosen)`` (each row sums to ``scaling``), or
    ``scaling * s_chosen`` without normalisation.
    """
    s_sel = np.take_along_axis(s, ids, axis=-1)  # (N, E) -> (N, K)
    if normalize:
        s_sel = s_sel / s_sel.sum(axis=-1, keepdims=True)  # (N, K)
    return s_sel * float(scaling)


def route(u: np.ndarray, W_router: np.ndarray, b_router: np.ndarray, config):
    """Scores, choice and gates for ``u (N, C)``: returns ``(s (N, E), ids (N, K), gates (N, K))``."""
    s = scores(u, W_router)  # (N, E)
    ids = select_experts(s, b_router, config.experts_per_token, config.n_expert_groups, config.groups_per_token)
    return s, ids, gate_values(s, ids, config.routed_scaling, config.normalize_gates)


# --------------------------------------------------------------------------- backward (the choice held fixed)
def gates_backward(dgates: np.ndarray, s: np.ndarray, ids: np.ndarray, gates: np.ndarray, scaling: float,
                   normalize: bool) -> np.ndarray:
    """``dL/dg (N, K) -> dL/ds (N, E)``: through the scaling and the normalisation.

    With ``g_k = r s_k / S`` and ``S = sum_j s_j`` over the chosen experts,
    ``dL/ds_k = (r dL/dg_k - sum_j dL/dg_j g_j) / S``; experts not chosen get 0.
    """
    if normalize:
        S = np.take_along_axis(s, ids, axis=-1).sum(axis=-1, keepdims=True)  # (N, 1)
        ds_sel = (float(scaling) * dgates - (dgates * gates).sum(axis=-1, keepdims=True)) / S  # (N, K)
    else:
        ds_sel = float(scaling) * dgates
    ds = np.zeros_like(s)  # (N, E)
    np.put_along_axis(ds, ids, ds_sel, axis=-1)  # note: a token's K experts are distinct
    return ds


def scores_backward(ds: np.ndarray, s: np.ndarray, u: np.ndarray, W_router: np.ndarray):
    """``dL/ds (N, E) -> (du (N, C), dW_router (C, E))`` through the sigmoid and ``u @ W_router``."""
    dz = ds * s * (1.0 - s)  # sigmoid' = s (1 - s), (N, E)
    return dz @ W_router.T, u.T @ dz  # (N, E) @ (E, C) -> (N, C); (C, N) @ (N, E) -> (C, E)


# --------------------------------------------------------------------------- the sequence-wise balance loss
def balance_loss(s: np.ndarray, ids: np.ndarray, alpha: float):
    """``alpha * mean over sequences of sum_i f_i P_i``; ``s (B, T, E)``, ``ids (B, T, K)``.

    ``f_i = E / (K T) * #{t : i chosen for t}`` and ``P_i = mean_t s_{i,t} / sum_j s_{j,t}``:
    f is 1 for every expert when the load is even, and the loss is smallest then.
    Returns ``(loss, f (B, E))``; ``f`` is what `balance_loss_backward` needs.
    """
    B, T, E = s.shape
    K = ids.shape[-1]
    chosen = np.zeros((B, T, E), s.dtype)
    np.put_along_axis(chosen, ids, 1.0, axis=-1)  # (B, T, E): 1 where expert i serves token t
    f = chosen.sum(axis=1) * (E / (K * T))  # (B, E)
    P = (s / s.sum(axis=-1, keepdims=True)).mean(axis=1)  # (B, T, E) -> (B, E)
    return float(alpha) * float((f * P).sum(axis=-1).mean()), f


def balance_loss_backward(s: np.ndarray, f: np.ndarray, alpha: float) -> np.ndarray:
    """Gradient of `balance_loss` w.r.t. ``s (B, T, E)`` (f, the counts, is held fixed)."""
    B, T, _ = s.shape
    S = s.sum(axis=-1, keepdims=True)  # (B, T, 1)
    dsn = np.broadcast_to((float(alpha) / (B * T)) * f[:, None, :], s.shape)  # dL/d(s/S), (B, T, E)
    # through s / S: d(s_i / S)/ds_j = (delta_ij - s_i / S) / S
    return (dsn - (dsn * s).sum(axis=-1, keepdims=True) / S) / S


# --------------------------------------------------------------------------- load balancing without a loss
def update_bias(state: dict, load: np.ndarray, gamma: float) -> dict:
    """Nudge the router bias towards an even load, in place: ``b_i += gamma * sign(mean(load) - load_i)``.

    An underloaded expert's bias rises (it is chosen more often next time), an overloaded
    one's falls; an expert exactly at the mean keeps its bias. No gradient is involved.

    Args:
        state: a dict holding ``"b_router" (E,)`` (a MoE layer's params).
        load: tokens routed to each expert, ``(E,)`` (the forward cache's ``hook_expert_load``).
        gamma: the bias update speed (``config.balance_speed``).

    >>> state = {"b_router": np.zeros(4, np.float32)}
    >>> update_bias(state, np.array([5, 1, 3, 3]), 0.1)["b_router"]
    array([-0.1,  0.1,  0. ,  0. ], dtype=float32)
    """
    b = state["b_router"]
    load = np.asarray(load, np.float64)
    if load.shape != b.shape:
        raise ValueError(f"load has shape {load.shape}, but the router has {b.shape[0]} experts; pass the "
                         "layer's hook_expert_load (E,)")
    # note: in place, so a bias that is a view into the optimizer's flat buffer stays one
    b += (float(gamma) * np.sign(load.mean() - load)).astype(b.dtype)
    return state
