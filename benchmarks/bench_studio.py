"""studio speed: the recompute time of each kind of interaction, p50 and p95.

Budget: <= 200 ms at p95 per interaction on the 2-core machine. The callbacks are driven
directly (no browser, no HTTP): an interaction's time is the sum of the callbacks Dash fires for
it on the page shown (pages out of sight wait until they are opened), run one after another.
Each kind is sampled over seeded random values of its control (a clock, a batch, a node, ...),
after one warm-up call (the first call of a process imports the engines: said apart). BLAS
threads are pinned to 1.

A second table drives the same kinds through Dash's HTTP endpoint (`/_dash-update-component`,
Flask's test client, no socket): the callback plus Dash's request handling and the JSON of the
tables and figures it sends back.

Each line also gives the process's CPU time per interaction (p50, p95): on a machine other jobs
load, the wall time grows with the load and the CPU time much less.

Run: .venv/bin/python benchmarks/bench_studio.py [SAMPLES]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import chipforge as cf  # noqa: E402
from chipforge.cluster import search  # noqa: E402
from chipforge.studio import app as pages  # noqa: E402
from chipforge.studio import compute  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 40
BUDGET = 0.200
BASE = "preset:forge-n3"
CUSTOM = [pages.CUSTOM_DEFAULT[k] for k in pages.CUSTOM_KEYS]
# the Cluster page's other controls at their defaults (pages.DEFAULTS): training precision,
# recompute and run options; serving precision, run options, tp, pp and the two SLOs
TRAIN_DEFAULTS = ["bf16", "", []]
SERVE_DEFAULTS = ["bf16", [], "", "", "", ""]


def form(**edits) -> list[str]:
    values = compute.form_values(cf.load_chip("forge-n3"))
    values.update(edits)
    return [values[f] for f in compute.FIELD_IDS]


def url(page: str, fields: list[str]) -> None:
    controls = {k: pages.DEFAULTS[k] for k in pages.CONTROLS}
    pages.url_update(page, BASE, list(compute.DEFAULT_VS), None, *fields, *controls.values())


def _p(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def main() -> None:
    rng = random.Random(0)
    t0 = time.perf_counter()
    chip = pages.chip_update(BASE, *form())[0]
    model = ("llama3-8b", None)

    def chip_edit():
        field, value = rng.choice(
            [
                ("clock", f"{rng.uniform(0.8, 3.0):.2f} GHz"),
                ("cores", str(rng.choice([2, 4, 8, 16]))),
                ("hbm-bandwidth", f"{rng.uniform(3, 16):.1f} TB/s"),
                ("tdp", f"{rng.randint(500, 1500)} W"),
                ("matrix-rows", str(rng.choice([128, 256, 512]))),
            ]
        )
        fields = form(**{field: value})
        pages.chip_update(BASE, *fields)
        url("chip", fields)

    def run_edit():
        phase = rng.choice(["prefill", "decode"])
        pages.run_update(
            chip, rng.choice(["llama3-8b", "llama3-70b", "gpt2", "mixtral-8x7b"]), None, phase,
            str(rng.choice([1, 8, 32, 128])), str(rng.choice([512, 2048, 8192])),
            str(rng.choice([1024, 4096])), ["h100", "b200", "tpu-v7"], *CUSTOM,
        )  # fmt: skip

    def open_run():
        pages.show_page("run")
        pages.run_update(chip, *model, "decode", "8", "2048", "2048", ["h100", "b200"], *CUSTOM)

    def train_edit():
        pages.train_update(
            chip, *model, str(rng.choice([8, 64, 512, 4096])), str(rng.choice([2048, 4096])),
            str(rng.choice([1, 2, 4])), str(rng.choice([1, 2])), *TRAIN_DEFAULTS, *CUSTOM,
        )  # fmt: skip

    def train_searched():  # the search itself: its memo of finished searches emptied first
        search._PLANS.clear()
        pages.train_update(chip, *model, str(rng.choice([8, 64, 512])), "4096", "", "",
                           *TRAIN_DEFAULTS, *CUSTOM)  # fmt: skip

    def train_again():  # a search done before (another page, an undo): the memo's answer
        if not seen:
            seen.extend(pages.train_update(chip, *model, str(n), "4096", "", "", *TRAIN_DEFAULTS,
                                           *CUSTOM) for n in (8, 64, 512))  # fmt: skip
        pages.train_update(chip, *model, str(rng.choice([8, 64, 512])), "4096", "", "",
                           *TRAIN_DEFAULTS, *CUSTOM)  # fmt: skip

    seen: list = []

    def serve_edit():
        pages.serve_update(
            chip, *model, str(rng.choice([1, 2, 8])), str(rng.choice([512, 2048, 8192])),
            str(rng.choice([128, 256, 1024])), *SERVE_DEFAULTS, *CUSTOM,
        )  # fmt: skip

    def open_cluster():
        pages.show_page("cluster")
        pages.train_update(chip, *model, "64", "4096", "1", "1", *TRAIN_DEFAULTS, *CUSTOM)
        pages.serve_update(chip, *model, "8", "2048", "256", *SERVE_DEFAULTS, *CUSTOM)

    def silicon_edit():
        pages.silicon_update(chip, rng.choice(["", "n7", "n5", "n4", "n3e", "n3p", "n2"]))

    scenario = Path(__file__).resolve().parents[1] / "examples" / "decide" / "forge_vs_gb200.toml"

    def decide_edit():
        pages.decide_update(scenario, chip, BASE, ["chip"], rng.choice(["256", "1024"]), [])

    def decide_new_chip():
        edited = pages.chip_update(BASE, *form(clock=f"{rng.uniform(0.8, 3.0):.3f} GHz"))[0]
        pages.decide_update(scenario, edited, BASE, ["chip"], "256", [])

    def site_edit():
        pages.site_update(chip, BASE, f"{rng.choice([10, 100, 300, 1000])} MW")

    kinds = [
        ("Chip: edit a field (clock, cores, HBM, TDP, array)", chip_edit),
        ("Run: change model, phase, batch or sizes", run_edit),
        ("open Run (chip against 2 chips)", open_run),
        ("Cluster: training plan, tp/pp given", train_edit),
        ("Cluster: serving plan (searched)", serve_edit),
        ("open Cluster (training + serving)", open_cluster),
        ("Silicon: re-target the node", silicon_edit),
        ("Site: change the facility power", site_edit),
        ("Decision: change the samples (same chip)", decide_edit),
        ("Cluster: training plan, tp/pp searched (blank)", train_searched),
        ("Cluster: a searched training plan seen before", train_again),
        ("Decision: a newly edited chip (its plans run)", decide_new_chip),
    ]
    open_run()
    print(
        f"first chip and run of a process (imports the engines): {time.perf_counter() - t0:.2f} s"
    )
    print(f"{'interaction':<52} {'p50':>8} {'p95':>8}  budget {BUDGET * 1e3:.0f} ms  (n={N})")
    worst = 0.0
    for name, fn in kinds:
        fn()  # warm-up
        times, cpu = [], []
        for _ in range(N):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        p50, p95 = _p(times, 0.5), _p(times, 0.95)
        ok = "OK" if p95 <= BUDGET else "OVER"
        worst = max(worst, p95)
        print(f"{name:<52} {p50 * 1e3:6.1f} ms {p95 * 1e3:6.1f} ms  {ok}  "
              f"(CPU p50 {_p(cpu, 0.5) * 1e3:.1f} p95 {_p(cpu, 0.95) * 1e3:.1f} ms)")  # fmt: skip
    print(f"worst p95: {worst * 1e3:.1f} ms  "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip


def http() -> None:
    """The chip edit and the Run page's recompute through Dash's own request handling."""
    from chipforge.studio.server import make_app

    client = make_app("bench").server.test_client()
    deps = client.get("/bench/_dash-dependencies").get_json()
    chip = pages.chip_update(BASE, *form())[0]
    start = compute.form_values(cf.load_chip("forge-n3"))
    values = {"base": BASE, "page": "run", "chip": chip, "config-key": None, "vs": ["h100"]}
    values |= {f"f-{k}": v for k, v in start.items()} | {
        c: pages.DEFAULTS[c] for c in pages.CONTROLS
    }
    values |= {"vs": list(compute.DEFAULT_VS)}

    def post(marker: str, changed: str, **edits) -> float:
        dep = next(d for d in deps if marker in d["output"])
        v = values | edits
        body = {
            "output": dep["output"],
            "outputs": [
                {"id": o.split(".")[0], "property": o.split(".")[1]}
                for o in dep["output"].strip(".").split("...")
            ],
            "inputs": [{**i, "value": v.get(i["id"])} for i in dep["inputs"]],
            "state": [{**i, "value": v.get(i["id"])} for i in dep["state"]],
            "changedPropIds": [changed],
        }
        t = time.perf_counter()
        r = client.post("/bench/_dash-update-component", json=body)
        dt = time.perf_counter() - t
        assert r.status_code == 200, (r.status_code, r.data[:300])
        return dt

    rng = random.Random(1)

    def clock():
        return post("chip-figures", "f-clock.value", **{"f-clock": f"{rng.uniform(1, 3):.2f} GHz"})

    def batch():
        return post("run-charts", "batch.value", batch=str(rng.choice([1, 8, 32, 128])))

    def isl():
        return post("serve-charts", "isl.value", page="cluster", isl=str(rng.choice([512, 2048])))

    kinds = [
        ("Chip: edit the clock", clock),
        ("Run: change the batch (4 chips, charts)", batch),
        ("Cluster: serving plan", isl),
    ]
    print(f"through Dash's HTTP handler (test client){'':<14} {'p50':>8} {'p95':>8}")
    for name, fn in kinds:
        fn()
        times = sorted(fn() for _ in range(N))
        p50, p95 = times[len(times) // 2], times[min(len(times) - 1, int(0.95 * len(times)))]
        ok = "OK" if p95 <= BUDGET else "OVER"
        print(f"{name:<52} {p50 * 1e3:6.1f} ms {p95 * 1e3:6.1f} ms  {ok}")


if __name__ == "__main__":
    main()
    http()
