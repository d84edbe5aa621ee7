"""The shape rules of a parallelism plan, shared by training (`training.check_plan`, the flags
`search.plan_training` is given) and serving (`serving_plan._check`).

Each check raises the caller's error class (training: `Infeasible`, which searches skip;
serving: `WorkloadError`) with one line naming the flag and the values to try instead. Those
values are computed one way everywhere: the divisors of --chips that pass the same rule, so
every suggestion works. The one real difference is explicit: training may give the first and
last pipeline stage up to 2 fewer layers (`stage_layers`, Llama 3 paper Sec. 3.3.2,
`uneven=True`: the embedding and the loss each take a layer's slot, Megatron-Core's
`account_for_embedding/loss_in_pipeline_split`), and the model's MTP modules are pipeline blocks
of the last stage (Megatron-Core's `pipeline_model_parallel_layout` "...tmL": DeepSeek-V3's 61
layers + 1 MTP block + embedding + loss = 64 slots on 16, 8, 4 or 2 stages); serving needs the
layers split evenly (`uneven=False`, no MTP block).
"""

from __future__ import annotations

import functools
import math

from chipforge.cluster.layer import ATTENTION
from chipforge.cluster.memory import pipeline_blocks
from chipforge.errors import ChipforgeError, WorkloadError, flag
from chipforge.workload.config import ModelConfig

Error = type[ChipforgeError]

# Counts a plan is given, capped before any search loop or table is built: far past any real
# run, small enough that every figure stays an exact float and a search ends in seconds.
MAX_CHIPS = 2**24  # --chips and each parallel degree: 16.8 M, ~100x the largest cluster built
MAX_TOKENS = 2**24  # tokens in one sequence (--seq, --isl, --osl): 16.8 M
MAX_SEQUENCES = 2**20  # sequences served at once (--max-batch, --concurrency)
# sequences in a training step (--global-batch, --micro-batch, --tokens-per-batch / --seq): what
# the default batch reaches at MAX_CHIPS (chips / 8, `training.default_global_batch`); a MIN:MAX
# range is searched batch size by batch size, so its MAX is capped lower (~20 s at the cap)
MAX_GLOBAL_BATCH = MAX_CHIPS // 8
MAX_BATCH_RANGE = 2**16


def stage_layers(layers: int, stages: int) -> int | None:
    """Layers on the busiest stage: an even split, or one with the first and last stages a
    layer short (Llama 3 paper Sec. 3.3.2: 126 layers on 16 stages); None otherwise."""
    per = -(-layers // stages)
    return per if per * stages - layers <= (2 if stages > 2 else 0) and stages <= layers else None


def divisors(n: int, *, upto: int | None = None) -> list[int]:
    """The divisors of `n` up to `upto` (default: all; [1] past a million, where a search grid
    makes no sense). Suggestions pass the heads or the layers as `upto`, so a search that hits
    a failing check on 16K chips does not walk 16K candidates."""
    if upto is None and n >= 10**6:
        return [1]
    return [d for d in range(1, min(n, upto or n) + 1) if n % d == 0]


def whole(
    value, shown: str, low: int = 1, high: int | None = None, *, error: Error = WorkloadError
):
    """`value` if it is a whole number from `low` (to `high`); a bool, float or text is not one.
    The one check, and the one message, of a count that `train` and `serve` share, whether it
    comes as a flag's value to the API (`positive`), a table's key (cluster.train_options,
    cluster.serve_options) or a site's request (datacenter.workload): `shown` names it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        top = f" to {high:,}" if high is not None else ""
        raise error(f"{shown} must be a whole number from {low}{top}, not {value!r}")
    return value


def positive(*, error: Error, required: tuple[str, ...] = (), **flags: int | None) -> None:
    """Every given flag (None: not given, an error for those named in `required`) is a whole
    number from 1 (a bool is not)."""
    for name, value in flags.items():
        if value is not None or name in required:
            whole(value, flag(name), error=error)


def at_most(limit: int, *, error: Error = WorkloadError, **flags) -> None:
    """Every given flag (None: not given) is at most `limit`; a `(lo, hi)` range is checked by
    its top. The error names the flag and the limit."""
    for name, value in flags.items():
        top = value[-1] if isinstance(value, tuple) and value else value
        if isinstance(top, int | float) and not isinstance(top, bool) and top > limit:
            raise error(f"{flag(name)} must be at most {limit:,}, not {top:,}")


def token_count(tokens, *, error: Error = WorkloadError) -> None:
    """`--tokens` (None: not given) is a positive finite number: a NaN or negative count made
    a NaN or negative time to train."""
    if tokens is not None and (
        isinstance(tokens, bool) or not isinstance(tokens, int | float) or not 0 < tokens < math.inf
    ):
        raise error(f"--tokens must be a positive count of tokens such as 15.6e12, not {tokens!r}")


def within_context(
    c: ModelConfig, isl: int, osl: int, *, fields: str, error: Error = WorkloadError
) -> None:
    """`isl` + `osl` within the model's stated maximum context (vLLM refuses longer requests:
    max_model_len), else one line naming `fields` (how the caller spells isl + osl)."""
    if c.max_context and isl + osl > c.max_context:
        raise error(
            f"{fields} = {isl + osl:,} tokens exceeds {c.name}'s maximum context "
            f"{c.max_context:,} (max_position_embeddings): lower them"
        )


def tp_values(c: ModelConfig, chips: int) -> list[int]:
    """Tensor-parallel degrees that split the attention heads and the chips evenly."""
    return [d for d in divisors(chips, upto=c.heads) if c.heads % d == 0]


def tp_heads(c: ModelConfig, tp: int, chips: int, *, error: Error) -> None:
    """Each TP rank holds whole attention heads (Megatron-LM, Shoeybi et al. 2019 Sec. 3)."""
    if c.heads % tp or chips % tp:
        raise error(
            f"--tp {tp} must divide the {c.heads} heads of {c.name} and --chips {chips}; "
            f"try --tp in {tp_values(c, chips)}"
        )


def end_stage_split(
    layers: int, pp: int, first: int | None, last: int | None, interleave: int = 1
) -> tuple[int, ...] | None:
    """Decoder layers on each pipeline rank (all its interleaved chunks) as Megatron-Core splits
    them under --decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers
    (`first` / `last`; None: not given): the given end ranks hold what they state and the
    middle ranks split the rest evenly (megatron/core/transformer/transformer_block.py
    get_num_layers_to_build: "the left over layers must be divisible by left over stages"),
    each rank's count a multiple of the virtual stages (its `num_layers_per_pipeline_rank %
    vp_size` assertion). None where the counts do not split so, or neither is given."""
    if (first is None and last is None) or pp < 2:
        return None
    ends = [n for n in (first, last) if n is not None]
    rest, middle = layers - sum(ends), pp - len(ends)
    if any(n < 1 for n in ends) or rest < 0 or (rest % middle if middle else rest):
        return None
    per = rest // middle if middle else 0
    counts = [per] * pp
    if first is not None:
        counts[0] = first
    if last is not None:
        counts[-1] = last
    if min(counts) < 1 or any(n % interleave for n in counts):
        return None
    return tuple(counts)


@functools.cache
def balanced_ends(
    layers: int, mtp: int, pp: int, interleave: int = 1, head: float = 0.0
) -> tuple[int, int] | None:
    """The first and last stages' layers (end_stage_split) whose busiest rank, the last
    holding the MTP modules and the output layer and loss (`head`: their FLOPs in decoder-layer
    units, training.head_blocks), is least loaded: the 1F1B step is m x the slowest rank plus
    the others once (training._pipeline), so with the total fixed the least busiest rank is the
    fastest split; Megatron-LM's --decoder-last-pipeline-num-layers exists to so balance the
    output layer (Llama 3 paper Sec. 3.3.2: its last stage a layer short for the head and
    loss). Ties: the fewest blocks on the busiest rank (the head's priced time is at most its
    FLOPs' share: recomputation and the layers' TP / EP / CP collectives add to the layers
    only), then the fewest layers on the ends (the embedding runs on the first, and the first
    rank holds the most micro-batches in flight), then the ends closest, then the first the
    larger. A search's choice where the even and Llama-3 splits fail, not a source's. None
    where none exists."""
    # end_stage_split's splits are exactly these: the ends and the middle ranks' equal share
    # `per` each a multiple of v, at least v (pp 2: no middle rank), the last what is left.
    # The busiest rank's load M (blocks, the last's head added) is the key's first term: a
    # whole bound B is raised from M's lower bound (the average, and the last rank's v layers
    # with the MTP modules and the head) until a split with M <= B holds, and every split
    # within B is enumerated: the least M lies in (B - 1, B], so the other terms pick among
    # them as over all. O(pp x v) splits, not O(layers^2): a config.json of 10^9 layers
    # answers at once. The same answers as the pair-by-pair enumeration on every case of
    # tests/test_plan_search.py's grid.
    if pp < 2:
        return None
    v, middle, extra = interleave, pp - 2, mtp + head
    if layers % v or layers < pp * v:  # every rank holds a multiple of v, at least v
        return None
    room = layers - v * (middle + 1)  # the most either end or the middle share can hold
    busiest = max(math.ceil((layers + extra) / pp), math.ceil(v + extra))
    while True:
        best = None
        top = min(busiest, room) // v * v  # first and per: multiples of v, at most `busiest`
        cap = math.floor(busiest - extra)  # the last's layers within `busiest`
        low = max(v, layers - cap - middle * top)  # the first, the last within `busiest`
        for first in range(-(-low // v) * v, top + 1, v):
            rest = layers - first
            if middle:
                lo = max(v, -(-(rest - cap) // middle))
                hi = min(top, (rest - v) // middle)
                pers = range(-(-lo // v) * v, hi // v * v + 1, v)
            else:
                pers = range(1)
            for per in pers:
                last = rest - per * middle
                if v <= last <= cap:
                    most = max(first, per, last + mtp)
                    key = (max(most, last + extra), most, first + last, abs(first - last), -first)
                    if best is None or key < best[0]:
                        best = (key, (first, last))
        if best is not None:
            return best[1]
        busiest += 1


def end_stages(
    c: ModelConfig,
    pp: int,
    first: int | None,
    last: int | None,
    *,
    interleave: int = 1,
    error: Error,
) -> tuple[int, ...]:
    """`end_stage_split` of `c`'s layers, or one line naming the flags and the rule."""
    split = end_stage_split(c.layers, pp, first, last, interleave)
    if split is not None:
        return split
    given = " ".join(
        f"--{name}-stage-layers {n}" for name, n in (("first", first), ("last", last))
        if n is not None
    )  # fmt: skip
    vp = f", and each stage's a multiple of --interleave {interleave}" if interleave > 1 else ""
    raise error(
        f"{given} need --pp 2 or more and leave the other stages of --pp {pp} an equal share, "
        f"at least 1, of the {c.layers} layers of {c.name}{vp} (Megatron-Core's "
        "--decoder-first/last-pipeline-num-layers rule); change them or --pp"
    )


def _stages_fit(c: ModelConfig, stages: int, uneven: bool) -> bool:
    if uneven:
        return stage_layers(pipeline_blocks(c), stages) is not None
    return c.layers % stages == 0


def pp_values(c: ModelConfig, chips: int, *, uneven: bool, interleave: int = 1) -> list[int]:
    """Pipeline depths that split the chips evenly and the layers as the caller allows."""
    return [d for d in divisors(chips, upto=c.layers) if _stages_fit(c, d * interleave, uneven)]


def pp_layers(
    c: ModelConfig, pp: int, chips: int, *, uneven: bool, interleave: int = 1, error: Error
) -> None:
    """`pp` x `interleave` stages hold whole layers: evenly, or (uneven) with one fewer on
    each of the first and last stages (`stage_layers`)."""
    if chips % pp or not _stages_fit(c, pp * interleave, uneven):
        what = f"--pp {pp}" + (f" (x --interleave {interleave})" if interleave > 1 else "")
        ends = " (the first and the last stage may each hold one fewer)" if uneven else ""
        keep, ok = "", pp_values(c, chips, uneven=uneven, interleave=interleave)
        if not ok:  # no depth fits this interleave; without it, one stage always fits
            keep, ok = "--interleave 1 ", pp_values(c, chips, uneven=uneven)
        blocks = f"{c.layers} layers" + (
            f" + {c.mtp_layers} MTP" if uneven and c.mtp_layers else ""
        )
        raise error(
            f"{what} must divide the {blocks} of {c.name}{ends} and --chips {chips}; "
            f"try {keep}--pp in {ok}"
            + (" or state --first-stage-layers / --last-stage-layers" if uneven else "")
        )


# the degree a product suggestion changes first: dp and cp split no weights, tp and pp do
VARY_FIRST = ("dp", "cp", "pp", "tp")


def _degree_fits(c: ModelConfig, flag: str, value: int, uneven: bool, interleave: int) -> bool:
    if flag == "tp":
        return c.heads % value == 0
    return flag != "pp" or _stages_fit(c, value * interleave, uneven)


def product(
    c: ModelConfig,
    chips: int,
    *,
    exact: bool,
    uneven: bool,
    error: Error,
    interleave: int = 1,
    **degrees: int | None,
) -> None:
    """The given `degrees` (tp, pp, dp, cp; None: not given) multiply to --chips (`exact`) or
    to a divisor of it. The suggestion changes one flag, in VARY_FIRST order the first whose
    partners divide the chips, to values that pass this check and that flag's own rule."""
    given = {k: v for k, v in degrees.items() if v is not None}
    total = math.prod(given.values())
    if total == chips if exact else chips % total == 0:
        return
    need = "equal" if exact else "divide"
    names, values = "*".join(given), "*".join(map(str, given.values()))
    shape = f"--{names} {values}" if len(given) == 1 else f"{names} = {values} = {total}"
    head = f"{shape} must {need} --chips {chips}"
    for deg in sorted(given, key=VARY_FIRST.index):
        rest = total // given[deg]
        if chips % rest:
            continue
        ok = [chips // rest] if exact else divisors(chips // rest, upto=chips)
        ok = [v for v in ok if _degree_fits(c, deg, v, uneven, interleave)]
        if ok:
            keep = "".join(f"--{k} {v} " for k, v in given.items() if k != deg)
            raise error(f"{head}; try {keep}--{deg} in {ok}")
    raise error(f"{head}; no one flag can fix it: change two of {', '.join(given)}")


def ep_divides(c: ModelConfig, ep: int, within: dict[str, int], *, error: Error) -> None:
    """Expert parallelism needs a mixture-of-experts model, and `ep` must divide each group it
    is carved from (`within`: a description -> its size)."""
    if ep == 1:
        return
    if not c.is_moe:
        raise error(f"--ep {ep} needs a MoE model; {c.name} is dense: use --ep 1")
    if any(n % ep for n in within.values()):
        sizes = " and ".join(f"{k} ({n})" for k, n in within.items())
        common = math.gcd(*within.values())
        ok = divisors(common, upto=common)
        raise error(f"--ep {ep} must divide {sizes}; try --ep in {ok}")


def attention_kernel(attention: str) -> None:
    """A kernel generation `cluster.layer` prices (bad input, never an infeasible plan)."""
    if attention not in ATTENTION:
        raise WorkloadError(f"--attention must be one of {', '.join(ATTENTION)}, not {attention!r}")


def cp_chunks(cp: int, seq: int, chips: int, *, error: Error) -> None:
    """Context parallelism splits each sequence into 2 x cp chunks, two per rank, for load
    balance under the causal mask (Megatron-Core context parallelism; Llama 3 paper Sec.
    3.3.2): cp must divide --seq into an even number of tokens per rank. No split (cp = 1)
    takes any length."""
    if cp > 1 and (seq % cp or (seq // cp) % 2):
        common = math.gcd(chips, seq)
        ok = [d for d in divisors(common, upto=128) if d == 1 or (seq // d) % 2 == 0]
        raise error(f"--cp {cp} must divide --seq {seq} into even chunks; try --cp in {ok}")
