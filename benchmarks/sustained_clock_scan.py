"""Acceptance, held-out and frontier training figures with and without the sustained clock,
over FRAMEWORK_OVERHEAD values (docs/cluster.md, "Sustained clocks"). Prints one line each:

    python benchmarks/sustained_clock_scan.py [0.15,0.14,...]
"""

from __future__ import annotations

import functools
import sys

from chipforge.cluster import frontier_validate, search, training
from chipforge.cluster import validate as v

KINDS = ("training", "training-heldout", "training-frontier")


def main(values: list[float]) -> None:
    assert frontier_validate.FILENAME  # registers the frontier cases
    for sustained, overheads in ((False, [training.FRAMEWORK_OVERHEAD]), (True, values)):
        v.plan_training = functools.partial(search.plan_training, sustained_clock=sustained)
        for fo in overheads:
            training.FRAMEWORK_OVERHEAD = search.FRAMEWORK_OVERHEAD = fo
            search._PLANS.clear()  # plans found at another overhead
            rows = v.run(KINDS)
            parts = []
            for k in KINDS:
                s = v.summary([r for r in rows if r["kind"] == k])
                parts.append(f"{k} {s['median_abs_error']:.1%} / {s['max_abs_error']:.1%}")
            print(f"sustained={sustained} overhead={fo:.2f}: " + ", ".join(parts))


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else "0.15,0.14,0.13,0.12,0.11,0.10,0.09,0.08"
    main([float(x) for x in arg.split(",")])
