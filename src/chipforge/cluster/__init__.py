"""Many chips: topologies, collectives, training plans (parallelism, memory, step time)."""

from chipforge.cluster.collectives import collective_time
from chipforge.cluster.memory import memory_per_chip
from chipforge.cluster.peers import calculon_model, calculon_plan
from chipforge.cluster.search import plan_training
from chipforge.cluster.serving import ServingPlan, plan_serving
from chipforge.cluster.topology import Topology, topology_for, topology_names
from chipforge.cluster.training import Plan, TrainingPlan, evaluate_plan

__all__ = [
    "Plan",
    "ServingPlan",
    "Topology",
    "TrainingPlan",
    "calculon_model",
    "calculon_plan",
    "collective_time",
    "evaluate_plan",
    "memory_per_chip",
    "plan_serving",
    "plan_training",
    "topology_for",
    "topology_names",
]

# registering the validation cases: the serving set, the frontier held-out set, the check-only
# set, published peak memory
from chipforge.cluster import (  # noqa: E402,F401
    check_validate,
    frontier_validate,
    memory_validate,
    serving_validate,
)
