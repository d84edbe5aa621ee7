"""A small model zoo as PyTorch modules, for the torch.export path: GPT-2 and Llama-family
decoders from the model presets, ResNet-50, ViT-B/16 and BERT-base/large. Modules are built
on the meta device (shapes, no weights) unless `device` says otherwise; torch is imported only
when a zoo model is built."""

from __future__ import annotations

import importlib

from chipforge.errors import WorkloadError, did_you_mean
from chipforge.workload.config import load_model, model_names
from chipforge.workload.graph import Graph

VISION = {"resnet50": "resnet", "vit-b16": "vit"}  # name -> module
ENCODERS = ("bert-base", "bert-large")


def zoo_names() -> list[str]:
    """Zoo models: the vision and encoder models plus every decoder preset without MLA."""
    decoders = [n for n in model_names() if not load_model(n).kv_lora]
    return [*VISION, *ENCODERS, *decoders]


def _check_sizes(name: str, batch: int, seq: int | None, image: int) -> None:
    """The run's sizes before torch builds anything, as a traced config's (`hf_traced`): a
    meta tensor past int64 failed deep in torch.export (exit 3)."""
    from chipforge.workload.hf_traced import MAX_BATCH, MAX_ELEMENTS, MAX_SIDE, MAX_SIZE

    for key, value, cap in (("batch", batch, MAX_BATCH), ("seq", seq, MAX_SIZE),
                            ("image", image, MAX_SIDE)):  # fmt: skip
        if value is not None and not 1 <= value <= cap:
            raise WorkloadError(f"`workload.{key}` must be from 1 to {cap:,}, not {value:,}")
    if name in VISION:  # the stem's output: 64 channels at half the side
        elements, what = batch * 64 * (image // 2) ** 2, f"{image:,}-pixel images"
    else:  # attention scores of up to 64 heads
        n = seq or (128 if name in ENCODERS else load_model(name).seq)
        elements, what = batch * 64 * n * n, f"{n:,}-token sequences"
    if elements > MAX_ELEMENTS:
        raise WorkloadError(
            f"`workload` zoo:{name}: batch {batch:,} of {what} makes tensors of {elements:.3g} "
            "elements, past 2**40; lower `workload.batch` or the size"
        )


def zoo_module(
    name: str, *, batch: int = 1, seq: int | None = None, image: int = 224, device="meta"
):
    """The PyTorch module of zoo model `name` and its example inputs."""
    if name not in zoo_names():
        raise WorkloadError(
            f"`zoo` model must be one of {', '.join(zoo_names())}, not {name!r}"
            f"{did_you_mean(name, zoo_names())}"
        )
    _check_sizes(name, batch, seq, image)
    if name in VISION:
        module = importlib.import_module(f"chipforge.workload.zoo.{VISION[name]}")
        return module.build(batch=batch, image=image, device=device)
    if name in ENCODERS:
        bert = importlib.import_module("chipforge.workload.zoo.bert")
        return bert.build(name, batch=batch, seq=seq or 128, device=device)
    config = load_model(name)
    family = "gpt2" if config.act == "gelu" else "llama"
    module = importlib.import_module(f"chipforge.workload.zoo.{family}")
    return module.build(config, batch=batch, seq=seq or config.seq, device=device)


def build_zoo(
    name: str,
    *,
    batch: int = 1,
    seq: int | None = None,
    image: int = 224,
    dtype: str | None = None,
) -> Graph:
    """Zoo model `name` imported through torch.export (text models: `seq` tokens, default the
    model's context, 128 for BERT; vision models: `image` x `image` pixels)."""
    from chipforge.workload.torch_import import from_torch

    module, inputs = zoo_module(name, batch=batch, seq=seq, image=image)
    return from_torch(module, inputs, dtype=dtype, name=name)
