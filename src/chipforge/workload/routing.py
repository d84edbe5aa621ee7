"""How many routed experts a mixture-of-experts step touches: the one count that every graph
of routed experts (`workload.llm._moe`, the imported grouped GEMM in `workload.costs`) and so
every engine built on them (serving decode and prefill, training layers) prices weight reads
and per-expert GEMM tiles with.

A step routes `tokens` tokens, each to `top_k` distinct experts of `experts`. Under uniform,
independent routing a token misses a given expert with probability 1 - k/E (it picks k of the
E experts, each equally likely), so all T tokens miss it with probability (1 - k/E)^T and, by
linearity of expectation, the expected number of distinct experts hit is

    E_hit = E x (1 - (1 - k/E)^T)

-- the classical occupancy expectation (Feller, An Introduction to Probability Theory and Its
Applications, Vol. 1, Ch. II.5 and IX; with k = 1 it is the number of non-empty urns when T
balls fall into E urns). MoE decode is memory-bound on exactly this count: its latency follows
the number of distinct experts the batch activates, not E ("MoE latency is governed by the
number of activated experts": Opportunistic Expert Activation, arXiv 2511.02237, abstract;
Qwen3-30B-A3B and Qwen3-235B-A22B decode). One token hits exactly k experts; a large batch
hits all E.

Real routers are skewed (popular experts, correlated tokens), which concentrates the routes
on fewer experts, so the uniform count is the upper bound of the experts touched on average:
the model never prices fewer weight reads than balanced-uniform routing would need.

With expert parallelism the EP group routes `tokens` tokens in all (each rank's own tokens
times the group size) and one rank holds `local` of the experts: it expects
local x (1 - (1 - k/E)^T) of its experts hit. The routes one rank computes stay its share of
T x k, which `llm._moe` spreads over the experts hit here.
"""

from __future__ import annotations

import math


def expected_experts_hit(experts: int, top_k: int, tokens: int, local: int | None = None) -> float:
    """Expected distinct experts hit (of `local`, default all `experts`) when `tokens` tokens
    each route to `top_k` distinct experts of `experts`, uniformly and independently (see the
    module docstring): local x (1 - (1 - top_k/experts)^tokens)."""
    if not 0 < top_k <= experts or tokens < 0:
        raise ValueError(f"need 0 < top_k <= experts and tokens >= 0: {top_k}, {experts}, {tokens}")
    local = experts if local is None else local
    if tokens == 0:
        return 0.0
    # log1p/expm1: exact for top_k = experts (every expert hit) and small k/E alike
    miss = math.exp(tokens * math.log1p(-top_k / experts)) if top_k < experts else 0.0
    return local * (1.0 - miss)


def experts_hit(
    experts: int, top_k: int, tokens: int, routes: int, local: int | None = None
) -> int:
    """The whole number of experts a grouped GEMM over `routes` (token, expert) rows reads the
    weights of: `expected_experts_hit` rounded, at least 1 and at most `routes` (each hit
    expert has a row) and `local`."""
    local = experts if local is None else local
    hit = round(expected_experts_hit(experts, top_k, tokens, local))
    return max(1, min(local, routes, hit))


def expert_groups(
    experts: int, top_k: int, tokens: int, routes: int, local: int | None = None
) -> tuple[int, int, int]:
    """How a grouped GEMM over `routes` (token, expert) rows is costed: (hit, rows, extra) --
    the `experts_hit` experts, each weight read once, the routes spread evenly over them:
    hit - extra experts take `rows` = routes // hit rows and `extra` = routes % hit experts one
    row more. hit x rows + extra = routes, so the FLOPs stay 2 x routes x k x n."""
    hit = experts_hit(experts, top_k, tokens, routes, local)
    rows, extra = divmod(routes, hit)
    return hit, rows, extra
