"""The numbers of docs/import.md's table of vision, diffusion, encoder and audio models: each
model built by tests/test_vision_models.py (`build`, `trained_looking`), saved raw (.pt2) and
by the dynamo ONNX exporter, then costed (matrix FLOPs against FlopCounterMode, parameters
against sum(p.numel()), BatchNorm-folded for an ONNX CNN) and run functionally in bf16 on
forge-n3.

    PYTHONPATH=src python benchmarks/vision_models_table.py [arch ...]

(default: every arch of the test, small and full-size; ~5 minutes on 2 cores)."""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main(archs: list[str]) -> None:
    import test_vision_models as t
    import torch

    from chipforge.sim.graph_run import run_model
    from chipforge.spec import load_chip
    from chipforge.workload.parse import parse_workload

    warnings.filterwarnings("ignore")
    chip, folder = load_chip("forge-n3"), Path(tempfile.mkdtemp())
    for arch in archs or [*t.ARCHS, *t.FULL]:
        model, args, kwargs = t.build(arch)
        model = t.trained_looking(model)
        want = t.torch_flops(model, args, kwargs)
        paths = {"pt2": folder / f"{arch}.pt2"}
        torch.export.save(torch.export.export(model, args, kwargs), paths["pt2"])
        if (t.ARCHS | t.FULL)[arch][1]:
            paths["onnx"] = folder / f"{arch}.onnx"
            torch.onnx.export(model, args, str(paths["onnx"]), kwargs=kwargs, dynamo=True)
        for form, path in paths.items():
            graph = parse_workload(str(path))
            matrix = sum(o.total_flops for o in graph.ops if o.kind in t.MATRIX)
            folded = form == "onnx" and arch in t.CNNS
            ref = t.folded_params(model) if folded else t.params_of(model)
            run = run_model(path, chip)
            print(
                f"{arch:16s} {form:5s} FLOPs {matrix:.4e} vs {want:.4e} ({matrix / want - 1:+.2%})"
                f"  params {graph.meta['params']} vs {ref} ({graph.meta['params'] / ref - 1:+.2%})"
                f"  attention {graph.meta['attention']!r}"
                f"  bf16 {run['max_rel_diff']:.2e} {run['result']}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
