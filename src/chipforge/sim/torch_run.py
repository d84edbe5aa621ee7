"""Executing a saved torch.export program (.pt2) node by node with real parameters: matrix
aten ops (mm, addmm, bmm, matmul, linear, convolution as im2col, both products of
scaled_dot_product_attention: the fused attention program, or its two products where that
program cannot take the call) on the chip through `matrix_backend.Backend`; every other aten op
in torch fp32, its float results rounded to bf16 when the backend is the bf16 chip run. An op
whose value depends on no input (T5's relative-position buckets, rotary tables, a mask from
`arange`) is constant folding, done ahead of the run in fp32, matrix products included, as the
cost path counts it free (`imported.is_free`); a folded float constant is rounded to bf16
where the run reads it (a table stored in the chip's format), so an index computed from
floats (T5's log-spaced buckets) is exact."""

from __future__ import annotations

import math

import numpy as np

from chipforge.errors import WorkloadError
from chipforge.sim.matrix_backend import Backend
from chipforge.sim.onnx_run import _conv, einsum
from chipforge.workload.imported import require


def _np(t) -> np.ndarray:
    return t.detach().float().numpy()


def _pair(v) -> tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return (int(v[0]), int(v[-1]))


def grouped_mm(input, weight, offs, product=None):
    """transformers' `grouped_mm_fallback` (integrations/moe.py), reimplemented: rows of
    `input` (s, k) sorted by expert, rows offs[i-1]:offs[i] times expert i's (k, n) weight.
    `product(a, b)` does each product (the chip's, in a functional run); torch's by default.
    A .pt2 that calls the custom op runs this, never transformers' code."""
    import torch

    out = torch.zeros(input.shape[0], weight.shape[2], dtype=input.dtype)
    start = 0
    for i, end in enumerate(int(e) for e in offs.tolist()):
        end = min(max(end, start), input.shape[0])
        if end > start:
            a, b = input[start:end], weight[i]
            out[start:end] = product(a, b) if product else a @ b
        start = end
    return out


def routed_reference(program, inputs: tuple, routing: dict):
    """The exported module run by PyTorch itself (fp32), except that each `aten.topk` takes
    the indices `routing` holds for its node (the chip run's choices; the values are the
    reference's own scores at those indices). A mixture-of-experts router whose top-k flips
    between bf16 and fp32 sends whole rows to other experts: a discrete choice, not rounding;
    this reference compares the arithmetic under the same choices. Returns the outputs and
    {rows, flipped: rows whose fp32 top-k differs, max_gap: the largest fp32 score margin a
    flip overturned, relative to its row's largest score}."""
    torch = require("torch", "a torch.export program")
    topk = torch.ops.aten.topk.default
    stats = {"rows": 0, "flipped": 0, "max_gap": 0.0}

    class _Routed(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.op == "call_function" and n.target is topk and n.name in routing:
                scores, chosen = self.env[n.args[0]], routing[n.name]
                dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", -1)
                if scores.dim() != 2 or dim not in (-1, 1) or chosen.shape != out[1].shape:
                    return out  # only a router's (tokens, experts) scores are re-chosen
                own = torch.zeros_like(scores, dtype=torch.bool).scatter(1, out[1], True)
                ours = torch.zeros_like(own).scatter(1, chosen, True)
                flipped = (own != ours).any(dim=1)
                # how far apart the swapped scores are in fp32, relative to the row's largest
                lost = torch.where(own & ~ours, scores, torch.inf).amin(dim=1)
                won = torch.where(ours & ~own, scores, -torch.inf).amax(dim=1)
                gap = (lost - won) / scores.abs().amax(dim=1).clamp_min(1e-30)
                stats["rows"] += scores.shape[0]
                stats["flipped"] += int(flipped.sum())
                if flipped.any():
                    stats["max_gap"] = max(stats["max_gap"], float(gap[flipped].max()))
                out = (torch.gather(scores, 1, chosen), chosen)
            return out

    module = program.module() if hasattr(program, "graph_signature") else program
    with torch.no_grad():
        return _Routed(module).run(*inputs), stats


def run_program(
    program, inputs: tuple, backend: Backend, *, on_node=None, record=None, routing=None
):
    """Run `program` (an ExportedProgram, or the GraphModule of `pt2_module`) on `inputs`
    (torch tensors); returns its outputs as
    fp32 torch tensors. `record` (a dict) receives each node's float tensor output in numpy;
    `on_node(node_name, target)` is called after each node."""
    torch = require("torch", "a torch.export program")
    aten = torch.ops.aten
    current = [""]  # the name of the node being run

    def mm(a, b, name):
        return torch.from_numpy(backend.matmul(_np(a), _np(b), name))

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        refusal = (
            "an attn_mask"
            if attn_mask is not None
            else "dropout"
            if dropout_p
            else "a custom scale"
            if scale is not None and not math.isclose(scale, 1 / math.sqrt(q.shape[-1]))
            else None
        )
        fused = backend.attention(
            _np(q), _np(k), _np(v), causal=is_causal, name=current[0], refusal=refusal
        )
        if fused is not None:
            return torch.from_numpy(fused)
        if k.shape[-3] != q.shape[-3] and q.ndim >= 3:  # GQA (enable_gqa): repeat K and V
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
            v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
        s = mm(q, k.transpose(-2, -1), "sdpa.qk") * (scale or 1 / math.sqrt(q.shape[-1]))
        if is_causal:  # torch's causal mask is aligned top-left: tril(0)
            keep = torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).tril(0)
            s = s.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            s = (
                s + attn_mask
                if attn_mask.dtype != torch.bool
                else s.masked_fill(~attn_mask, float("-inf"))
            )
        p = _round(torch.softmax(s, dim=-1))
        return mm(p, v, "sdpa.pv")

    def conv(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), *rest):
        # convolution: (..., transposed, output_padding, groups); conv2d: (..., groups)
        groups = rest[-1] if rest else 1
        if len(rest) == 3 and rest[0]:
            raise WorkloadError("aten.convolution: transposed convolution has no functional run")
        stride, padding, dilation = (_pair(v) for v in (stride, padding, dilation))
        pads = (padding[0], padding[1], padding[0], padding[1])
        y = _conv(
            backend,
            "conv",
            _np(x),
            _np(w),
            None if b is None else _np(b),
            strides=stride,
            pads=pads,
            dilations=dilation,
            group=groups,
        )
        return torch.from_numpy(np.ascontiguousarray(y))

    def contract(equation, tensors, path=None):
        if len(tensors) == 1:  # a permutation or a sum: torch's own
            return torch.einsum(equation, *tensors)
        z = einsum(equation, [_np(t) for t in tensors], lambda a, b: backend.matmul(a, b, "einsum"))
        return torch.from_numpy(np.ascontiguousarray(z))

    def _float(t) -> bool:
        return isinstance(t, torch.Tensor) and t.is_floating_point()

    def _round(t):
        if backend.rounds_bf16 and isinstance(t, torch.Tensor) and t.is_floating_point():
            return t.to(torch.bfloat16).float()
        return t

    def _aliases(out, args) -> bool:
        """`out` is a view of (or written in place into) a tensor argument: rounding it would
        make a copy, and a later in-place write through it (`copy_` into a `slice` of a
        `new_empty`, as DeepSeek-V3 builds its keys) would miss the tensor read after."""
        if not isinstance(out, torch.Tensor):
            return False
        ptr = out.untyped_storage().data_ptr()
        flat = [a for x in args for a in (x if isinstance(x, (list, tuple)) else [x])]
        return any(isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == ptr
                   for a in flat)  # fmt: skip

    matrix = {
        aten.mm.default: lambda a, b: mm(a, b, "mm"),
        aten.bmm.default: lambda a, b: mm(a, b, "bmm"),
        aten.matmul.default: lambda a, b: mm(a, b, "matmul"),
        aten.addmm.default: lambda c, a, b, beta=1, alpha=1: beta * c + alpha * mm(a, b, "addmm"),
        aten.linear.default: lambda x, w, b=None: mm(x, w.T, "linear") + (0 if b is None else b),
        aten.convolution.default: conv,
        aten.conv2d.default: conv,
        aten.scaled_dot_product_attention.default: sdpa,
        aten.einsum.default: contract,
        grouped_mm: lambda x, w, offs: grouped_mm(x, w, offs, lambda a, b: mm(a, b, "grouped")),
    }

    live: set[str] = set()  # nodes whose value depends on an input (the rest fold ahead)

    class _Run(torch.fx.Interpreter):
        def call_function(self, target, args, kwargs):
            if self._node_name not in live:  # constant folding (tables, buckets): fp32
                out = super().call_function(target, args, kwargs)
            elif target in matrix:
                out = matrix[target](*args, **kwargs)
            else:
                out = super().call_function(target, args, kwargs)
                out = out if _aliases(out, args) else _round(out)  # a view keeps its values
            if record is not None and isinstance(out, torch.Tensor) and out.is_floating_point():
                record[self._node_name] = _np(out)
            if routing is not None and target is aten.topk.default:
                routing[self._node_name] = out[1]  # the experts this run chose
            if on_node:
                on_node(self._node_name, str(target))
            return out

        def run_node(self, n):
            self._node_name = current[0] = n.name
            if n.op == "placeholder" or any(a.name in live for a in n.all_input_nodes):
                live.add(n.name)
            if n.name not in live or not backend.rounds_bf16:
                return super().run_node(n)
            folded = {  # a folded constant is stored in the vector unit's format
                a: self.env[a]
                for a in n.all_input_nodes
                if a.op == "call_function" and a.name not in live and _float(self.env.get(a))
            }
            self.env.update({a: _round(v) for a, v in folded.items()})
            try:
                return super().run_node(n)
            finally:
                self.env.update(folded)

    module = program.module() if hasattr(program, "graph_signature") else program
    with torch.no_grad():
        out = _Run(module).run(*inputs)
    return out
