"""chipforge: define a TPU-style AI accelerator, run real models on it before silicon exists,
and compare it with the GPUs it competes with.

Packages follow the data flow (see DESIGN.md): units, spec, workload -> perf -> report/cli.
"""

__version__ = "0.1.0"

# The Python API (chipforge.api), loaded on first use so `import chipforge` stays light.
API = (
    "load_chip",
    "load_model",
    "evaluate",
    "compare",
    "plan_training",
    "plan_serving",
    "cost",
    "cost_sensitivity",
    "site",
    "sweep",
    "build_or_buy",
)
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    if name in API:
        from chipforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'chipforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
