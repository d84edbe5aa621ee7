"""chipforge: define a TPU-style AI accelerator, run real models on it before silicon exists,
and compare it with the GPUs it competes with.

Packages follow the data flow (see DESIGN.md): units, spec, workload -> perf -> report/cli.
"""

__version__ = "0.1.0"
