"""Deep transformers models imported from a few of their layers (`from_torch`'s layer sampling):
the same graph as the whole torch.export, and the whole export whenever the layers differ.

The models are built from transformers' config classes with tiny random weights (hidden 64,
6 layers, 32 tokens; nothing downloaded); stacks of 4 or more layers are sampled here (12 by
default) so the models stay small.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from chipforge.workload import from_torch, torch_import, torch_sample  # noqa: E402

pytestmark = pytest.mark.models

TOKENS, VOCAB, LAYERS = 32, 256, 6
COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS)
COMMON |= dict(num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB, use_cache=False)


@pytest.fixture
def exports(monkeypatch):
    """The stack depth of each module torch.export is asked for; stacks of >= 4 layers are
    sampled."""
    monkeypatch.setattr(torch_sample, "MIN_LAYERS", 4)
    seen: list = []
    real = torch_import._export

    def export(t, module, args, label):
        seen.append(_depth(module))
        return real(t, module, args, label)

    monkeypatch.setattr(torch_import, "_export", export)
    return seen


def _depth(module) -> int:
    lists = [len(m) for m in module.modules() if isinstance(m, torch.nn.ModuleList)]
    return max(lists, default=0)


def build(arch: str):
    T = transformers
    torch.manual_seed(0)
    if arch == "llama":
        return T.LlamaForCausalLM(T.LlamaConfig(**COMMON)).eval()
    if arch == "qwen2moe":
        moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64)
        config = T.Qwen2MoeConfig(**COMMON, **moe, shared_expert_intermediate_size=64)
        return T.Qwen2MoeForCausalLM(config).eval()
    if arch == "gemma3":  # sliding and global layers: `attention_type` differs by layer
        config = T.Gemma3TextConfig(**COMMON, head_dim=16, sliding_window=8)
        return T.Gemma3ForCausalLM(config).eval()
    raise AssertionError(arch)


@pytest.mark.parametrize("arch", ["llama", "qwen2moe"])
def test_sampled_transformers_decoder_is_the_whole_export(arch, exports):
    """transformers decoders (mask code with `.item()` checks, `layer_idx` in every layer) are
    imported from cuts of 1, 2 and 3 layers: the same folded graph (every op and count,
    weights, parameters) as exporting all 6, and FLOPs within 2 % of torch's own counter."""
    model, ids = build(arch), torch.randint(0, VOCAB, (1, TOKENS))
    sampled = from_torch(model, ids)
    assert exports == [1, 2, 3]  # sampling really ran
    whole = from_torch(model, ids, sample_layers=False)
    assert sampled == whole
    params = sum(p.numel() for p in model.parameters())
    assert sampled.meta["params"] == pytest.approx(params, rel=0.005)  # + rotary buffers
    assert len(model.model.layers) == LAYERS  # the stack is restored
    if arch == "llama":  # torch's counter on the linear layers (its sdpa rule is non-causal)
        counter = torch.utils.flop_counter.FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(ids)
        counts = counter.get_flop_counts()["Global"]
        linear = sum(n for op, n in counts.items() if "attention" not in str(op))
        matmul = sum(op.total_flops for op in sampled.ops if op.kind == "matmul")
        assert matmul == pytest.approx(linear, rel=0.02)


def test_layers_of_different_kinds_are_not_a_stack(exports):
    """Gemma 3 alternates sliding-window and global layers (an attribute of each layer): no
    stack of identical layers, so `from_torch` exports it whole."""
    model = build("gemma3")
    assert len(model.model.layers) >= torch_sample.MIN_LAYERS
    assert torch_sample.find_stack(model) is None


class Indexed(torch.nn.Module):
    """A layer that knows its index and does more work at one of them."""

    def __init__(self, layer_idx: int, heavy: int):
        super().__init__()
        self.layer_idx, self.heavy = layer_idx, heavy
        self.proj = torch.nn.Linear(16, 16)

    def forward(self, x):
        x = self.proj(x)
        return self.proj(x) if self.layer_idx == self.heavy else x


class Stack(torch.nn.Module):
    def __init__(self, heavy: int):
        super().__init__()
        self.layers = torch.nn.ModuleList(Indexed(i, heavy) for i in range(LAYERS))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


@pytest.mark.parametrize("heavy", [-1, 0, 3, LAYERS - 1])
def test_a_layer_branching_on_its_index_is_seen(heavy, exports):
    """`layer_idx` alone may differ between sampled layers, but a layer that branches on it
    makes other calls in the all-layer meta run: that model is exported whole."""
    model, x = Stack(heavy), torch.ones(2, 16)
    found = torch_sample.find_stack(model)
    assert found is not None  # the index alone does not tell the layers apart
    assert torch_sample.uniform(model, (x,), found) == (heavy == -1)
    graph = from_torch(model, x)
    assert exports == ([1, 2, 3] if heavy == -1 else [LAYERS])
    assert graph == from_torch(model, x, sample_layers=False)
    assert graph.flops == 2 * 2 * 16 * 16 * (LAYERS + (heavy >= 0))
