"""Many chips: topologies, collectives, training plans (parallelism, memory, step time).

The package's names load with their module on first use (PEP 562 `__getattr__`), so a command
that needs one submodule (`show`: the topology) does not load the training, serving and
validation models. The validation sets register their cases when `cluster.validate` runs them
(`validate.load_sets`)."""

from __future__ import annotations

from importlib import import_module

# every public name, with the submodule that defines it
_EXPORTS = {
    "Plan": "training",
    "ServingPlan": "serving",
    "Topology": "topology",
    "TrainingPlan": "training",
    "calculon_model": "peers",
    "calculon_plan": "peers",
    "collective_time": "collectives",
    "evaluate_plan": "training",
    "memory_per_chip": "memory",
    "plan_serving": "serving",
    "plan_training": "search",
    "topology_for": "topology",
    "topology_names": "topology",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
