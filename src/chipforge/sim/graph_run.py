"""End-to-end numerics: an imported model (.onnx or .pt2) run on the simulated chip with real
weights, compared node by node with a reference evaluation of the same graph.

- bf16: the chip run (`chip-bf16`) against fp32 — numpy fp32 evaluation of the ONNX graph, or
  PyTorch fp32 (the exported module itself) for a .pt2. Verdict: the normwise error of every
  model output, max|chip - ref| / max|ref|, within `BF16_BOUND`.
- int8: the chip run (`chip-int8`) against the numpy int8 reference (same symmetric per-tensor
  quantization, numpy's int8 x int8 -> int32 products). Verdict: bit-exact outputs.
- int8-channel: as int8, with weights quantized per output channel (one scale a column of B).

`BF16_BOUND` = 2^-5. Derivation: bf16 keeps 8 significant bits, unit roundoff u = 2^-9. Each
inexact stage (operands rounded into a matrix product, the product's bf16 result, each vector
op's bf16 result) adds a relative error <= u to the tensor it produces; LayerNorm/softmax keep
gains ~1, so to first order errors add along the longest path. A 2-layer transformer has ~8
inexact stages a layer on its longest path (LN, QKV, QK^T, softmax, PV, proj, MLP in, GELU, MLP
out, residual adds), about 16-20 in all, and normwise errors of random data (sqrt(K)-cancelling)
stay well below the worst case: 16 u = 2^-5. Measured: ~5e-3 (transformer), ~2e-3 (CNN).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from chipforge.errors import WorkloadError
from chipforge.sim.budget import BudgetError, default_max_memory
from chipforge.sim.matrix_backend import Backend
from chipforge.spec import ChipSpec
from chipforge.units import fmt
from chipforge.userfile import missing, note_input

BF16_BOUND = 2.0**-5
DTYPES = ("bf16", "int8", "int8-channel")


def backends(dtype: str, chip: ChipSpec) -> tuple[Backend, Backend]:
    """The chip run's backend and its reference's, for functional dtype `dtype`."""
    if dtype == "bf16":
        return Backend("chip-bf16", chip), Backend("fp32")
    channel = dtype == "int8-channel"
    return Backend("chip-int8", chip, per_channel=channel), Backend("int8", per_channel=channel)


def _diff(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if g.shape != w.shape:
        raise AssertionError(f"shape {g.shape} != {w.shape}")
    mask = np.isfinite(w) & np.isfinite(g)  # masked attention scores: -inf in both
    if not np.array_equal(np.isfinite(w), np.isfinite(g)):
        return float("inf"), float("inf")
    diff = float(np.abs(g[mask] - w[mask]).max(initial=0.0))
    return diff, diff / max(float(np.abs(w[mask]).max(initial=0.0)), 1e-30)


def _onnx_inputs(model, dims: dict[str, int], rng, source: str) -> dict[str, np.ndarray]:
    from chipforge.workload.onnx_import import input_shapes

    inits = {t.name for t in model.graph.initializer}
    user = [vi for vi in model.graph.input if vi.name not in inits]
    shapes = input_shapes(user, dims, source)
    rows = _gather_rows(model, inits)
    feeds = {}
    for vi in user:
        name, shape = vi.name, shapes[vi.name]
        elem = vi.type.tensor_type.elem_type
        if elem in ONNX_FLOATS or elem == 0:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
        elif elem == 9:  # bool: every position attended
            feeds[name] = np.ones(shape, bool)
        elif name in rows:  # ids into an embedding table
            feeds[name] = rng.integers(0, rows[name], size=shape).astype(np.int64)
        elif "position" in name and shape:
            feeds[name] = np.broadcast_to(np.arange(shape[-1]), shape).astype(np.int64)
        else:
            feeds[name] = np.ones(shape, np.int64)
    return feeds


ONNX_FLOATS = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto)


def _gather_rows(model, inits: set[str]) -> dict[str, int]:
    """Graph inputs used as the indices of a Gather from an initializer (an embedding table),
    directly or through Cast/Reshape/Unsqueeze: input -> the table's rows."""
    tables = {t.name: t.dims[0] for t in model.graph.initializer if len(t.dims) >= 1}
    made = {out: n for n in model.graph.node for out in n.output}
    rows: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[0] not in tables:
            continue
        if any(a.name == "axis" and a.i != 0 for a in node.attribute):
            continue
        vid = node.input[1]
        while vid in made and made[vid].op_type in ("Cast", "Reshape", "Unsqueeze", "Identity"):
            vid = made[vid].input[0]
        if vid not in made and vid not in inits:
            rows[vid] = min(rows.get(vid, tables[node.input[0]]), tables[node.input[0]])
    return rows


def values_bytes(values: dict) -> float:
    """Peak memory of a functional run over an importer program's values: every value in fp32,
    held by both runs (chip and reference), and the largest compared in fp64 (`_diff`: two
    copies, a mask and the difference)."""
    sizes = [_elements(v) for v in values.values()]
    return 2 * 4 * sum(sizes) + 32 * max(sizes, default=0.0)


def _elements(value) -> float:
    return math.prod(float(d) for d in value.shape)


def check_memory(path: Path, program, max_memory: float) -> None:
    """Refuse a functional run whose `values_bytes` is over `max_memory`."""
    from chipforge.workload.imported import largest_value

    need = values_bytes(program.values)
    if need > max_memory:
        raise BudgetError(
            f"the functional run of {path.name} would need about {fmt(need, 'bytes', digits=3)} "
            f"(every tensor in fp32, chip and reference runs; {largest_value(program)}), over the "
            f"{fmt(max_memory, 'bytes', digits=3)} memory budget; raise it with --max-memory, "
            "or bind smaller dimensions"
        )


def onnx_program(model, dims: dict[str, int], source: str):
    """The importer's program of an ONNX model: every value's shape (the importer's checks of
    the model, `onnx_import.check_order` and `check_initializer`, run first)."""
    import onnx

    from chipforge.workload.onnx_import import _Importer

    return _Importer(onnx, model, source, dims).program()


def pt2_program(path: Path, dims: dict[str, int]):
    """The importer's program of a .pt2, from the archive's JSON graph (nothing unpickled), or
    None when that reader cannot follow the file (the loader then says why)."""
    from chipforge.workload import pt2_archive

    try:
        return pt2_archive.imported(pt2_archive.read(path), dims)
    except pt2_archive.Unreadable:
        return None


def _run_onnx(path: Path, dims, chip, dtype, seed, on_node, max_memory, given=None):
    from chipforge.sim.onnx_run import load_model, load_weights, run_onnx

    model = load_model(path, weights=False)
    check_memory(path, onnx_program(model, dims, path.name), max_memory)
    load_weights(model, path)
    feeds = _onnx_inputs(model, dims, np.random.default_rng(seed), path.name)
    if given:  # the user's arrays, in each input's own type
        arrays = load_inputs(given, {k: v.shape for k, v in feeds.items()})
        for k, a in arrays.items():
            _same_kind(given, k, a, feeds[k].dtype.kind == "f")
        feeds |= {k: a.astype(feeds[k].dtype, copy=False) for k, a in arrays.items()}
    chip_be, ref_be = backends(dtype, chip)
    got = run_onnx(model, feeds, chip_be, on_node=on_node, max_bytes=max_memory)
    want = run_onnx(model, feeds, ref_be, max_bytes=max_memory)
    outputs = [o.name for o in model.graph.output]
    ref = "numpy fp32 evaluation of the ONNX graph" if dtype == "bf16" else "numpy int8"
    return got, want, outputs, ref, chip_be, {k: list(v.shape) for k, v in feeds.items()}, None


def sample_input(torch, name: str, shape, dtype, rows: int | None, gen):
    """A valid value for a model input: N(0, 1) floats; ids in [0, rows) for an input that
    indexes an embedding table; position ids 0..n-1 along the last axis; ones for masks and
    other integer or boolean inputs (every position attended)."""
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if rows:
        return torch.randint(0, rows, tuple(shape), generator=gen).to(dtype)
    if "position" in name and shape:
        return torch.arange(shape[-1]).expand(tuple(shape)).to(dtype).contiguous()
    return torch.ones(tuple(shape), dtype=dtype)


def _same_kind(path, name: str, array: np.ndarray, floating: bool) -> None:
    """A float array for an integer input (ids) or the reverse is refused, not cast."""
    if (array.dtype.kind == "f") != floating:
        want = "floats" if floating else "integers (ids, positions, masks)"
        raise WorkloadError(
            f"`--inputs` {Path(path).name}: {name!r} holds {array.dtype}, the model takes {want}"
        )


def _array_header(npz, key: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of an .npz member from its .npy header alone (no data read)."""
    npy = np.lib.format
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    with npz.zip.open(f"{key}.npy") as f:
        version = npy.read_magic(f)
        if version not in readers:
            raise ValueError(f"npy format {version}")
        shape, _, dtype = readers[version](f)
    return tuple(shape), dtype


def load_inputs(path: str | Path, expected: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Input arrays from a user's `.npz` (never unpickled), checked against the model's
    inputs `expected` (name -> shape): names, and each array's shape and dtype from its header
    before its data is read (a small .npz can declare or inflate to terabytes)."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"`--inputs` {path} {missing(path)}; give an .npz file (numpy.savez)")
    note_input(path, "--inputs file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {}
            for key in npz.files:
                if key not in expected:
                    names = ", ".join(expected) or "none"
                    raise WorkloadError(
                        f"`--inputs` {path.name}: {key!r} is not an input of the model; "
                        f"its inputs: {names}"
                    )
                shape, dtype = _array_header(npz, key)
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise ValueError(f"dtype {dtype}")
                if shape != tuple(expected[key]):
                    raise WorkloadError(
                        f"`--inputs` {path.name}: {key!r} has shape {list(shape)[:8]}, the model "
                        f"takes {list(expected[key])}"
                    )
                arrays[key] = npz[key]
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        # pickled object arrays, damaged zip, a member that is not an .npy
        raise WorkloadError(
            f"`--inputs` {path.name} is not a readable .npz of plain arrays ({type(e).__name__})"
            "; write one with numpy.savez(path, name=array, ...)"
        ) from None
    return arrays


def _run_pt2(path: Path, dims, chip, dtype, seed, on_node, trust_pickle=False, feeds=None):
    from chipforge.sim.pt2_module import load

    loaded = load(path, dims, trust_pickle=trust_pickle)
    import torch  # after the checks: a refused file never imports it

    from chipforge.sim.torch_run import routed_reference, run_program

    gen = torch.Generator().manual_seed(seed)
    given = load_inputs(feeds, {n: s for n, s, _ in loaded.inputs}) if feeds else {}
    for name, _, dt in loaded.inputs:
        if name in given:
            _same_kind(feeds, name, given[name], dt.is_floating_point)
    inputs = tuple(
        torch.from_numpy(given[name]).to(dt)
        if name in given
        else sample_input(torch, name, shape, dt, loaded.vocab.get(name), gen)
        for name, shape, dt in loaded.inputs
    )
    got, want, routing, routed = {}, {}, {}, None
    chip_be, ref_be = backends(dtype, chip)
    try:
        out_chip = run_program(
            loaded.module, inputs, chip_be, on_node=on_node, record=got, routing=routing
        )
        out_ref = run_program(loaded.module, inputs, ref_be, record=want)
        if dtype == "bf16":  # the reference is PyTorch itself, fp32, the exported graph as is
            with torch.no_grad():
                out_ref = loaded.module(*inputs)
            if routing:  # a router's top-k: the same choices, in fp32 (`routed_reference`)
                out_routed, stats = routed_reference(loaded.module, inputs, routing)
                first = out_routed[0] if isinstance(out_routed, (tuple, list)) else out_routed
                routed = stats | {"output0": first.detach().float().numpy()}
    except (RuntimeError, ValueError, TypeError, IndexError) as e:  # torch's, on the file's graph
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise WorkloadError(
            f"`workload` {path.name}: PyTorch cannot run its graph ({type(e).__name__}: "
            f"{first}); re-export it with torch.export.save"
        ) from None
    flat = lambda o: list(o) if isinstance(o, (tuple, list)) else [o]  # noqa: E731
    names = []
    for i, (c, r) in enumerate(zip(flat(out_chip), flat(out_ref), strict=True)):
        got[f"output{i}"], want[f"output{i}"] = c.float().numpy(), r.detach().float().numpy()
        names.append(f"output{i}")
    ref = "PyTorch fp32 (the exported module)" if dtype == "bf16" else "numpy int8"
    return (
        got,
        want,
        names,
        ref,
        chip_be,
        {name: list(x.shape) for (name, _, _), x in zip(loaded.inputs, inputs, strict=True)},
        routed,
    )


def run_model(
    path: str | Path,
    chip: ChipSpec,
    *,
    dtype: str = "bf16",
    dims=None,
    seed: int = 0,
    on_node=None,
    trust_pickle: bool = False,
    max_memory: float | None = None,
    inputs: str | Path | None = None,
) -> dict:
    """Run the model file on `chip` end to end; per-node and overall differences, verdict.
    A .pt2 is read without unpickling (`pt2_module`); `trust_pickle` lets torch.load read its
    pickled weights (which can run any code the file holds). A run estimated over `max_memory`
    (default: half the RAM, `sim/budget.py`) is refused before it starts, and so is any ONNX
    node that would make a tensor past it."""
    path = Path(path)
    if dtype not in DTYPES:
        raise WorkloadError(
            f"`dtype` must be one of {', '.join(DTYPES)} for the functional run, not {dtype!r}"
        )
    if not path.is_file():
        raise WorkloadError(
            f"`workload` {path} {missing(path)}; give the path of a .onnx or .pt2 file"
        )
    limit = default_max_memory() if max_memory is None else max_memory
    if path.suffix.lower() == ".onnx":
        run = _run_onnx(path, dims or {}, chip, dtype, seed, on_node, limit, inputs)
    else:
        program = pt2_program(path, dims or {})
        if program is not None:
            check_memory(path, program, limit)
        run = _run_pt2(path, dims or {}, chip, dtype, seed, on_node, trust_pickle, inputs)
    got, want, outputs, ref, chip_be, shapes, routed = run
    nodes = []
    for name in got:
        if name in want and got[name].shape == want[name].shape:
            a, r = _diff(got[name], want[name])
            nodes.append({"node": name, "max_abs_diff": a, "max_rel_diff": r})
    finals = [_diff(got[o], want[o]) for o in outputs]
    exact = all(np.array_equal(got[o], want[o]) for o in outputs)
    rel = max((r for _, r in finals), default=0.0)
    ok = exact if dtype != "bf16" else rel <= BF16_BOUND
    routing = None
    if routed is not None:  # a MoE router: were its flips near-ties, and is the rest in bound?
        same = _diff(got[outputs[0]], routed["output0"])[1]
        routing = {k: routed[k] for k in ("rows", "flipped", "max_gap")} | {
            "max_rel_diff": same,
            "reference": "PyTorch fp32 with the chip run's top-k choices",
        }
        # a top-k choice overturned on fp32 scores closer than the run's own bound is a tie at
        # this precision, not an error; the run must then match under the same choices
        ok = ok or (routed["max_gap"] <= BF16_BOUND and same <= BF16_BOUND)
    return {
        "workload": path.name,
        "chip": chip.name,
        "dtype": dtype,
        "reference": ref,
        "inputs": shapes,
        "chip_programs": chip_be.programs,
        "attention": chip_be.attention_log,
        "nodes": nodes,
        "max_abs_diff": max((a for a, _ in finals), default=0.0),
        "max_rel_diff": rel,
        "bit_exact": exact,
        "bound": "bit-exact" if dtype != "bf16" else BF16_BOUND,
        "result": "match" if ok else "MISMATCH",
        **({"routing": routing} if routing else {}),
    }
