"""Cold start: the analytical commands import none of the heavy libraries (checked in a fresh
interpreter through sys.modules; not timed, benchmarks/bench_cli.py times them)."""

import json
import subprocess
import sys

HEAVY = (
    "ml_dtypes",
    "torch",
    "onnx",
    "plotly",
    "matplotlib",
    "dask",
    "optuna",
    "pyarrow",
    "amaranth",
    "scipy",
    "pandas",
    "SALib",
)

SCRIPT = """
import contextlib, io, json, sys

import chipforge.cli

def loaded():
    return sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))

seen = {"import chipforge.cli": loaded()}
for args in COMMANDS:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        chipforge.cli.app(args, standalone_mode=False)
    assert out.getvalue().strip(), args
    seen[" ".join(args[:1])] = loaded()
seen["numpy"] = "numpy" in sys.modules
print(json.dumps(seen))
"""

ANALYTICAL = [
    ["evaluate", "--chip", "h100", "--workload", "llama3-8b", "--json"],
    ["compare", "--chips", "h100,forge-n3", "--workload", "llama3-8b", "--json"],
    ["show", "h100", "--json"],
    ["presets", "--json"],
    ["train", "--chip", "h100", "--model", "llama3-8b", "--chips", "64", "--tp", "2", "--pp", "1",
     "--dp", "32", "--cp", "1", "--ep", "1", "--zero", "1", "--recompute", "selective",
     "--micro-batch", "1", "--interleave", "1", "--json"],
    ["serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "1", "--tp", "1", "--pp", "1",
     "--concurrency", "8", "--json"],
    ["cost", "--chip", "forge-n3", "--json"],
    ["datacenter", "--chip", "h100", "--json"],
    ["validate", "--json"],
]  # fmt: skip


def _python(code: str) -> str:
    """`code` run by a fresh interpreter (nothing imported yet): its stdout, after exit 0."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _modules_seen(commands: list[list[str]]) -> dict:
    return json.loads(_python(f"HEAVY = {HEAVY!r}\nCOMMANDS = {commands!r}\n" + SCRIPT))


def test_evaluate_json_imports_no_heavy_library():
    seen = _modules_seen(ANALYTICAL[:1])
    assert seen == {"import chipforge.cli": [], "evaluate": [], "numpy": False}


def test_analytical_commands_import_no_heavy_library():
    seen = _modules_seen(ANALYTICAL)
    assert set(seen) == {"import chipforge.cli", "numpy", *(a[0] for a in ANALYTICAL)}
    heavy = {k: v for k, v in seen.items() if k != "numpy" and v}
    assert heavy == {}  # numpy is allowed here; only `evaluate` is held to no numpy


def test_heavy_library_still_loads_where_it_is_used():
    """The check can fail: the cycle engine's functional simulator does load ml_dtypes."""
    code = "import sys; from chipforge.sim import run_functional; print('ml_dtypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr


ENTRY_POINTS = {  # DESIGN.md's package table, where the name exists
    "chipforge.units": ("parse_quantity",),
    "chipforge.spec": ("ChipSpec", "MatrixUnit", "VectorUnit", "MemoryLevel", "Link",
                       "ProcessNode", "load_chip"),
    "chipforge.workload": ("Graph", "Op", "build", "from_torch", "from_onnx"),
    "chipforge.perf": ("estimate",),
    "chipforge.sim": ("run_functional", "run_timing", "write_trace"),
    "chipforge.cluster": ("plan_training", "plan_serving", "evaluate_plan", "Plan",
                          "memory_per_chip", "calculon_plan"),
}  # fmt: skip


def test_documented_entry_points_are_exported_from_their_packages():
    import importlib

    for package, names in ENTRY_POINTS.items():
        module = importlib.import_module(package)
        for name in names:
            assert callable(getattr(module, name)), f"{package}.{name}"
            if hasattr(module, "__all__"):
                assert name in module.__all__, f"{package}.__all__ lacks {name}"


def test_the_cli_imports_no_cluster_model_before_a_command_runs():
    """`import chipforge.cli` (every command's module) loads no `chipforge.cluster` module: the
    training, serving and validation models (~60 ms) load inside the commands that use them,
    not on `--help`, `presets` or `evaluate` (cli/train.py imported cluster.train_options at the
    top, and with it the whole package)."""
    code = "import sys, chipforge.cli; print(sorted(m for m in sys.modules if 'cluster' in m))"
    assert _python(code).strip() == "[]"


def test_show_loads_the_topology_alone_of_the_cluster_package():
    """`show` needs `cluster.topology` only; `cluster/__init__` imported every model and
    validation set with it (~15 ms at rest) until its names loaded lazily (PEP 562)."""
    code = (
        "import contextlib, io, sys, chipforge.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    chipforge.cli.app(['show', 'h100', '--json'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith('chipforge.cluster')))"
    )
    assert _python(code).strip() == "['chipforge.cluster', 'chipforge.cluster.topology']"


def test_the_validation_sets_register_without_the_package_import():
    """Each set registers when `cluster.validate` runs the cases, whatever was imported before
    (the package's `__init__` no longer imports them)."""
    code = (
        "from chipforge.cluster import validate as v\n"
        "v.load_sets()\n"
        "print(sorted({p.__module__.rsplit('.', 1)[-1] for p in v.CASES}))"
    )
    expected = ["check_validate", "frontier_validate", "memory_validate", "serving_validate"]
    assert _python(code).strip() == str(sorted([*expected, "validate"]))
