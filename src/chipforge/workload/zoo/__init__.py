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
    """The run's sizes before torch builds anything, as a traced config's (`hf_traced`)."""
    from chipforge.workload.hf_traced import check_elements, check_run

    check_run(batch, seq, image)
    fix = "lower `workload.batch` or the size"
    if name in VISION:  # the stem's output: 64 channels at half the side
        largest = batch * 64 * (image // 2) ** 2, f"feature maps ({image:,}-pixel images)", fix
    else:  # attention scores of up to 64 heads
        n = seq or (128 if name in ENCODERS else load_model(name).seq)
        largest = batch * 64 * n * n, f"attention scores ({n:,} tokens)", fix
    check_elements(f"zoo:{name}", batch, largest)


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
