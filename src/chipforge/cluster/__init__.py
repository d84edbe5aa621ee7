"""Many chips: topologies, collectives, training plans (parallelism, memory, step time)."""

from chipforge.cluster.collectives import collective_time
from chipforge.cluster.topology import Topology, topology_for, topology_names

__all__ = ["Topology", "collective_time", "topology_for", "topology_names"]
