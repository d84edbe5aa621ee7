"""torchvision's and timm's ResNet-50, EfficientNet-B0 and ConvNeXt-T as their users save them
(raw .pt2 and dynamo ONNX), costed and run by chipforge. Two steps, two Python environments:
torchvision (and timm, which imports it) does not import beside the CPU torch 2.13.0 wheel the
`models` extra pins (docs/import.md), so the files are written by an environment that has them,
for instance a scratch venv with `pip install torch==2.14.1 torchvision==0.29.1 'timm>=1,<2'
'onnx>=1.16,<2' 'onnxscript>=0.5,<1'`, and read by the project's:

    /path/to/that/venv/bin/python benchmarks/torchvision_timm_check.py export FOLDER
    PYTHONPATH=src python benchmarks/torchvision_timm_check.py check FOLDER

`export` builds each model with random weights (norm statistics, scales and biases drawn away
from their init values, as tests/test_vision_models.py's `trained_looking` does, so the exporter
cannot fold or share them), at 64 x 64, and writes FOLDER/NAME.pt2, FOLDER/NAME.onnx and
FOLDER/reference.json (FlopCounterMode's FLOPs, sum(p.numel()), BatchNorm channels). `check`
costs each file (matrix FLOPs against FlopCounterMode; parameters against sum(p.numel()),
BatchNorm-folded for ONNX) and runs it functionally in bf16 on forge-n3; it exits 1 if a file
is off by more than 2 % in FLOPs or 0.5 % in parameters, or fails its run."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

SIDE = 64
MODELS = {  # name -> (library, constructor name)
    "tv_resnet50": ("torchvision", "resnet50"),
    "tv_efficientnet_b0": ("torchvision", "efficientnet_b0"),
    "tv_convnext_tiny": ("torchvision", "convnext_tiny"),
    "timm_resnet50": ("timm", "resnet50"),
    "timm_efficientnet_b0": ("timm", "efficientnet_b0"),
    "timm_convnext_tiny": ("timm", "convnext_tiny"),
}


def _trained_looking(torch, model) -> None:
    """tests/test_vision_models.py's `trained_looking` (+ torchvision's (C, 1, 1) layer scales),
    repeated: that module needs pytest and transformers, which the exporting side lacks."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            named = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            for name, t in named:
                if not t.is_floating_point():
                    continue
                if name in ("running_mean", "bias"):
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
                elif name in ("running_var", "layer_scale") or t.dim() == 1:
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)  # variances, scales


def export(folder: Path) -> None:
    import timm
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    folder.mkdir(parents=True, exist_ok=True)
    reference = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    reference["timm"] = timm.__version__
    for name, (library, builder) in MODELS.items():
        torch.manual_seed(0)
        if library == "torchvision":
            model = getattr(torchvision.models, builder)(weights=None)
        else:
            model = timm.create_model(builder, pretrained=False)
        model.eval()
        _trained_looking(torch, model)
        x = torch.randn(1, 3, SIDE, SIDE)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        torch.export.save(torch.export.export(model, (x,)), folder / f"{name}.pt2")
        torch.onnx.export(model, (x,), str(folder / f"{name}.onnx"), dynamo=True, verbose=False)
        norms = torch.nn.modules.batchnorm._BatchNorm
        reference[name] = {
            "flops": counter.get_total_flops(),
            "params": sum(p.numel() for p in model.parameters()),
            "batchnorm_channels": sum(
                m.num_features for m in model.modules() if isinstance(m, norms)
            ),
        }
        print(name, reference[name], flush=True)
    (folder / "reference.json").write_text(json.dumps(reference, indent=1))


def check(folder: Path) -> int:
    from chipforge.sim.graph_run import run_model
    from chipforge.spec import load_chip
    from chipforge.workload.parse import parse_workload

    reference = json.loads((folder / "reference.json").read_text())
    print(f"files from torch {reference['torch']}, torchvision {reference['torchvision']}, timm "
          f"{reference['timm']}; {SIDE} x {SIDE}, bf16 functional runs on forge-n3")  # fmt: skip
    chip, failed = load_chip("forge-n3"), 0
    print("| model | file | matrix FLOPs vs FlopCounterMode | params vs torch | bf16 run |")
    print("|---|---|---:|---:|---|")
    for name in MODELS:
        ref = reference[name]
        for form in ("pt2", "onnx"):
            graph = parse_workload(str(folder / f"{name}.{form}"))
            matrix = sum(op.total_flops for op in graph.ops if op.kind in ("matmul", "conv"))
            # an ONNX exporter folds each BatchNorm into the convolution: 2 C become C
            want = ref["params"] - (ref["batchnorm_channels"] if form == "onnx" else 0)
            flops, params = matrix / ref["flops"] - 1, graph.meta["params"] / want - 1
            run = run_model(folder / f"{name}.{form}", chip)
            ok = abs(flops) <= 0.02 and abs(params) <= 0.005 and run["result"] == "match"
            failed += not ok or bool(graph.meta.get("unsupported"))
            print(f"| {name} | {form} | {flops:+.2%} | {params:+.3%} | {run['result']} "
                  f"{run['max_rel_diff']:.1e} |" + ("" if ok else " FAILED"))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    if len(sys.argv) != 3 or sys.argv[1] not in ("export", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "export":
        export(Path(sys.argv[2]))
    else:
        sys.exit(check(Path(sys.argv[2])))
