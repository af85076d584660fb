"""Costs and counts: the three-layer fat-tree, Slim Fly and Dragonfly formulas, and ISCA Table 3.

The paper compares its multi-plane fat-tree with other ways to connect tens of
thousands of endpoints (ISCA Table 3): a two-layer fat-tree (FT2), the MPFT made
of eight of them, a three-layer fat-tree (FT3), Slim Fly (SF) and Dragonfly (DF).
The first three follow from their construction (``topology`` builds FT2 and MPFT
link by link; ``ft3`` here builds FT3's switch links). SF and DF are counted from
their published formulas with parameters fitted to the table, because the paper
does not state them: q = 28 for SF (not a prime power, so not a graph that can be
built) and a = 32, p = h = 16, g = 511 for DF.

Costs are a flat price per switch and per switch-to-switch link, fitted to the
paper's FT2 (9 M$) and FT3 (491 M$) rows: MPFT comes out exact (72 M$), SF and DF
within 2%, since the paper follows the Slim Fly paper's length-dependent cables.

Sources: ISCA 2025 (arXiv 2505.09343) Table 3 and §5.1.1; Al-Fares et al. (SIGCOMM
2008) for k-ary fat-trees; Besta & Hoefler, "Slim Fly" (SC 2014); Kim et al.,
"Technology-Driven, Highly-Scalable Dragonfly Topology" (ISCA 2008).

Left out: routing on SF and DF (two-layer fabrics route in ``routing``, the three-layer
tree link by link in ``fattree3``),
cable lengths, and any topology that is not in the paper's table.

    >>> [row["switches"] for row in table3().values()]
    [96, 768, 5120, 1568, 16352]
"""

from __future__ import annotations

import numpy as np

from minitransformer.scaleout.topology import PRICE_LINK, PRICE_SWITCH, check_k, check_positive, ft2, mpft


def ft3(k: int = 64) -> dict:
    """The k-ary three-layer fat-tree (Al-Fares et al.): k pods of k/2 edge + k/2 aggregation switches, (k/2)² cores.

    Returns the link arrays (``src``, ``dst``, ``kind``) and the counts; its paths are
    described by ``ft3_switch_hops``; ``fattree3.ft3_topology`` builds the same tree link by link and routes on it.

        >>> c = ft3(64)["counts"]
        >>> c["endpoints"], c["switches"], c["links"]
        (65536, 5120, 131072)
    """
    k = check_k(k)
    h = k // 2
    edge = np.arange(k * h)  # edge switch e = pod·h + i;  aggregation a = pod·h + j;  core c = j·h + m
    pod, _ = np.divmod(edge, h)
    e_rep, j = np.repeat(edge, h), np.tile(np.arange(h), k * h)  # every edge switch to every agg of its pod
    agg_of = np.repeat(pod, h) * h + j
    a_rep, m = np.repeat(np.arange(k * h), h), np.tile(np.arange(h), k * h)  # agg (pod, j) to cores j·h + m
    core_of = (a_rep % h) * h + m
    E0, A0, C0 = 0, k * h, 2 * k * h  # vertex numbering of the switch layers
    src = np.concatenate([E0 + e_rep, A0 + a_rep])
    dst = np.concatenate([A0 + agg_of, C0 + core_of])
    kind = np.concatenate([np.full(len(e_rep), 3, np.int8), np.full(len(a_rep), 4, np.int8)])
    switches = 2 * k * h + h * h
    links = len(src)
    cost = switches * PRICE_SWITCH + links * PRICE_LINK
    endpoints = k ** 3 // 4
    return dict(src=src, dst=dst, kind=kind, counts=dict(endpoints=endpoints, switches=switches, links=links,
                                                         cost_usd=cost, cost_per_endpoint_usd=cost / endpoints))


def ft3_switch_hops(k: int, src, dst) -> np.ndarray:
    """Switches a packet crosses between endpoints of ``ft3(k)``: 1 (same edge), 3 (same pod) or 5.

        >>> ft3_switch_hops(4, [0, 0, 0], [1, 2, 15]).tolist()
        [1, 3, 5]
    """
    k = check_k(k)
    src, dst = np.asarray(src), np.asarray(dst)
    h = k // 2
    same_edge = src // h == dst // h  # h hosts per edge switch
    same_pod = src // (h * h) == dst // (h * h)  # h² hosts per pod
    return np.where(same_edge, 1, np.where(same_pod, 3, 5))


def slimfly(q: int = 28, p: int | None = None) -> dict:
    """Slim Fly counts from its formulas (MMS graph with δ = 0): 2q² routers of network radix 3q/2.

    ``p`` endpoints per router defaults to ⌈radix/2⌉. q = 28 reproduces ISCA Table 3's
    row, but 28 is not a prime power, so it is a formula-level estimate, not a graph
    that can be built.

        >>> c = slimfly(28)
        >>> c["endpoints"], c["switches"], c["links"], c["radix"]
        (32928, 1568, 32928, 63)
    """
    if isinstance(q, bool) or not isinstance(q, int) or q < 2 or q % 4:
        raise ValueError(f"q={q!r} must be an int multiple of 4 (δ = 0 Slim Fly: q = 4w)")
    routers, net = 2 * q * q, 3 * q // 2
    p = -(-net // 2) if p is None else check_positive("p", p)  # endpoints per router
    links = routers * net // 2
    cost = routers * PRICE_SWITCH + links * PRICE_LINK
    return dict(endpoints=routers * p, switches=routers, links=links, radix=net + p, cost_usd=cost,
                cost_per_endpoint_usd=cost / (routers * p))


def dragonfly(a: int = 32, p: int = 16, h: int = 16, g: int | None = None) -> dict:
    """Dragonfly counts: g groups of a routers (all-to-all inside a group), p endpoints and h global links per router.

    ``g`` defaults to the largest, a·h + 1. a = 32, p = h = 16, g = 511 reproduces ISCA
    Table 3's row (the paper does not state these parameters; this is a fit).

        >>> c = dragonfly(32, 16, 16, 511)
        >>> c["endpoints"], c["switches"], c["links"]
        (261632, 16352, 384272)
    """
    a, p, h = check_positive("a", a), check_positive("p", p), check_positive("h", h)
    g = a * h + 1 if g is None else check_positive("g", g)
    if g > a * h + 1:
        raise ValueError(f"g={g} groups need more global links than a·h + 1 = {a * h + 1} allows")
    routers = a * g
    links = g * a * (a - 1) // 2 + g * a * h // 2  # local (inside groups) + global
    cost = routers * PRICE_SWITCH + links * PRICE_LINK
    return dict(endpoints=routers * p, switches=routers, links=links, radix=p + h + a - 1, cost_usd=cost,
                cost_per_endpoint_usd=cost / (routers * p))


def table3(k: int = 64, planes: int = 8) -> dict:
    """The rows of ISCA Table 3: counts and fitted costs for FT2, MPFT, FT3, SF and DF.

        >>> [row["endpoints"] for row in table3().values()]
        [2048, 16384, 65536, 32928, 261632]
    """
    return {"FT2": ft2(k).counts(), "MPFT": mpft(k, planes).counts(), "FT3": ft3(k)["counts"],
            "SF": slimfly(28), "DF": dragonfly(32, 16, 16, 511)}
