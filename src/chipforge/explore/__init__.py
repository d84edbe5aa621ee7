"""Design-space exploration: sweeps (grid, random, Latin hypercube) and multi-objective search
(Optuna NSGA-II / TPE) over chip specs, on a process pool or a Dask cluster, into a resumable
Parquet store. See docs/explore.md."""

from chipforge.explore.pareto import pareto
from chipforge.explore.run import sweep
from chipforge.explore.space import Space, SpaceError, load_space, space_from_dict
from chipforge.explore.store import Store

__all__ = ["Space", "SpaceError", "Store", "load_space", "pareto", "space_from_dict", "sweep"]
