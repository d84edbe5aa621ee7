"""Design-space exploration: input errors before work, infeasible/failed rows, Pareto front
against a brute-force reference, SIGKILL + resume equals a clean run, the example runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from chipforge.explore import SpaceError, Store, pareto, space_from_dict, sweep
from chipforge.explore import evaluate as ev
from chipforge.explore.pareto import front_mask

ROOT = Path(__file__).resolve().parents[1]
LAYER = "llm:llama3-70b,phase=decode,batch=64,context=4096,layers=1"


def _space(**over):
    d = {
        "base": {"chip": "forge-n3"},
        "params": {
            "matrix.rows": [128, 256],
            "clock": {"min": "1 GHz", "max": "2 GHz", "steps": 3},
        },
        "workloads": [{"spec": LAYER}],
        "objectives": {"tokens_per_s": "max", "unit_cost_usd": "min"},
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"params": {"matrix.rowz": [1]}}, "unknown field `matrix.rowz`"),
        ({"params": {"clock": []}}, "empty list"),
        ({"params": {"clock": {"min": 2e9, "max": 1e9}}}, "empty range"),
        ({"params": {"memory.DRAM.capacity": [1]}}, "no level 'DRAM'"),
        ({"constraints": {"max_tdp_w": -5}}, "no design can meet it"),
        ({"constraints": {"max_tdpw": 5}}, "did you mean max_tdp_w"),
        ({"objectives": {"speed": "max"}}, "unknown `speed`"),
        ({"sampler": {"method": "bayes"}}, "must be one of grid"),
    ],
)
def test_bad_space_is_one_line_error(over, words):
    with pytest.raises(SpaceError) as e:
        space_from_dict(_space(**over))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_space_exits_2(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[base]\nchip = "forge-n3"\n[params]\n"matrix.rowz" = [1]\n')
    r = subprocess.run(
        [sys.executable, "-m", "chipforge", "sweep", str(f), "--store", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "matrix.rowz" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()  # no work started


SERVE = {"model": "llama3-70b", "chips": 1, "isl": 1024, "osl": 1024, "dtype": "bf16"}


def _system_space(**over):
    d = _space(
        workloads=[],
        serving=dict(SERVE),
        objectives={"site_tokens_per_s": "max", "usd_per_million_tokens": "min"},
    )
    d.update(over)
    return space_from_dict(d)


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"serving": {**SERVE, "modle": "x"}}, "unknown key `modle`"),
        ({"serving": {**SERVE, "model": "llama9-1t"}}, "serving: `model`"),
        ({"serving": {**SERVE, "chips": 0}}, "`chips` must be a whole number from 1"),
        ({"serving": {**SERVE, "chips": 8, "tp": 3}}, "`tp` 3 must divide"),
        ({"serving": {**SERVE, "tpot_slo": "5 GB"}}, "serving.tpot_slo"),
        ({"site": {"pue": 0.9}}, "`pue` must be >= 1.0"),
        ({"site": {"rack": "nvl144"}}, "`--rack` must be one of"),
        ({"serving": None, "objectives": {"ttft_s": "min"}}, "needs a [serving] table"),
        ({"serving": {**SERVE, "isl": 131_000}}, "`isl` + `osl` = 132,024 tokens exceeds"),
        ({"serving": {**SERVE, "osl": 1}, "objectives": {"tpot_s": "min"}}, "osl = 1"),
        ({"site": {"rack": "missing-rack.toml"}}, "rack file 'missing-rack.toml' does not exist"),
    ],
)
def test_bad_system_tables_are_one_line_errors(over, words):
    d = _space(workloads=[{"spec": LAYER}], serving=dict(SERVE))
    d["objectives"] = {"usd_per_million_tokens": "min"}
    d.update(over)
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(SpaceError) as e:
        space_from_dict(d)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_site_objectives_equal_the_datacenter_model():
    """The base chip's site and serving figures are `chipforge datacenter`'s own (the other
    engine): same racks, chips, capex, TCO, site tokens/s and $ per million tokens."""
    from chipforge.datacenter import site_report

    ref = site_report("forge-n3", 1e9, model="llama3-70b")
    assert ref["serving"]["chips_per_replica"] == SERVE["chips"]  # datacenter's replica size
    row = ev.evaluate_point(_system_space(site={"power": "1 GW"}), {})
    assert row["status"] == "ok" and row["site_method"] == "datacenter.evaluate_site"
    assert row["chips_per_site"] == ref["chips"] and row["site_racks"] == ref["racks"]
    assert row["site_capex_usd"] == pytest.approx(ref["capex_usd"]["total"], rel=1e-12)
    assert row["tco_usd_per_year"] == pytest.approx(ref["tco_usd_per_year"], rel=1e-12)
    s = ref["serving"]
    assert row["site_tokens_per_s"] == pytest.approx(s["throughput_tokens_per_s"], rel=1e-9)
    assert row["usd_per_million_tokens"] == pytest.approx(s["usd_per_million_tokens"], rel=1e-9)
    # a hotter chip fills the same power with fewer chips; a smaller site holds fewer again
    hot = ev.evaluate_point(_system_space(), {"clock": 2e9})
    assert hot["tdp_w"] > row["tdp_w"] and hot["chips_per_site"] < row["chips_per_site"]


def test_serving_rows_match_a_fresh_plan_and_record_infeasible():
    """Design chips evaluated one after another in a process get the same serving numbers as
    each one alone (the per-layer cache in cluster.serving must not confuse them)."""
    from chipforge.cluster import serving as srv

    sp = _system_space(serving={**SERVE, "chips": 8, "isl": 2048, "osl": 256, "dtype": "fp8"})
    clocks = [1.0e9, 1.6e9, 1.2e9, 2.0e9, 1.0e9]
    seq = [ev.evaluate_point(sp, {"clock": c})["serving_tokens_per_s"] for c in clocks]
    for c, got in zip(clocks, seq, strict=True):
        srv._CACHE.clear()
        assert ev.evaluate_point(sp, {"clock": c})["serving_tokens_per_s"] == got
    assert seq[0] == seq[-1] and len(set(seq)) == 4
    small = ev.evaluate_point(_system_space(), {"memory.HBM3E.capacity": 16e9})
    assert small["status"] == "infeasible" and small["reason"].startswith("serving: ")
    assert small["serving_method"] == "cluster.plan_serving"


def test_rack_template_without_a_rack_preset():
    """A base chip with no rack preset is sited in the datacenter's template rack around each
    design's modelled TDP (as `chipforge datacenter --chip my-chip.toml`), TCO included."""
    from chipforge.datacenter import Assumptions

    a = Assumptions()
    sp = _system_space(
        base={"chip": "h200"},
        serving={**SERVE, "chips": 2},
        objectives={"site_tokens_per_s": "max", "usd_per_million_tokens": "min"},
    )
    row = ev.evaluate_point(sp, {"clock": 1.5e9})
    assert row["site_method"] == "datacenter.evaluate_site (rack template)"
    assert row["status"] == "ok" and row["usd_per_million_tokens"] > 0
    per_chip = (row["tdp_w"] + a.host_w_per_chip + a.network_w_per_chip) * (1 + a.rack_overhead)
    per_rack = row["chips_per_site"] / row["site_racks"]
    assert per_rack * per_chip <= a.rack_power_w < 2 * per_rack * per_chip


def test_infeasible_and_failed_points_are_rows(monkeypatch):
    sp = space_from_dict(_space(constraints={"max_tdp_w": 1000}))
    over_tdp = ev.evaluate_point(sp, {"matrix.rows": 256, "clock": 2e9})
    assert over_tdp["status"] == "infeasible" and "tdp_w" in over_tdp["reason"]
    bad = ev.evaluate_point(sp, {"matrix.rows": -4, "clock": 1e9})
    assert bad["status"] == "infeasible" and "matrix.rows" in bad["reason"]
    calls = []

    def crash(space, params):
        calls.append(1)
        raise RuntimeError("worker bug")

    monkeypatch.setattr(ev, "objectives", crash)
    failed = ev.evaluate_point(sp, {"matrix.rows": 128, "clock": 1e9})
    assert failed["status"] == "failed" and "worker bug" in failed["reason"]
    assert len(calls) == 2  # retried once


def test_point_id_is_the_spec_hash():
    sp = space_from_dict(_space())
    a = ev.point_id(sp, {"matrix.rows": 128, "clock": 1e9})
    assert a == ev.point_id(sp, {"clock": 1e9, "matrix.rows": 128})
    assert a != ev.point_id(sp, {"matrix.rows": 256, "clock": 1e9})
    # a parameter equal to the base value names the same chip as the base itself
    assert ev.point_id(sp, {"clock": 1.4e9}) == ev.point_id(sp, {})


def test_front_mask_matches_brute_force():
    v = np.random.default_rng(1).random((60, 3))
    ref = [
        not any((v[j] <= v[i]).all() and (v[j] < v[i]).any() for j in range(60)) for i in range(60)
    ]
    assert front_mask(v).tolist() == ref


def test_pareto_skips_rows_missing_an_objective():
    import pandas as pd

    df = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "infeasible"],
            "a": [1.0, 2.0, float("nan"), 0.0],
            "b": [2.0, 1.0, 0.0, 0.0],
        }
    )
    front = pareto(df, {"a": "min", "b": "min"})
    assert len(front) == 3 and front["pareto"].tolist() == [True, True, False]


def test_grid_sweep_store_and_pareto(tmp_path):
    sp = space_from_dict(_space())
    counts = sweep(sp, tmp_path / "r", workers=1)
    assert counts["evaluated"] == 6
    df = Store(tmp_path / "r").read()
    assert len(df) == 6 and set(df["status"]) == {"ok"}
    assert {"p.matrix.rows", "p.clock", "tokens_per_s", "unit_cost_usd", "reason"} <= set(df)
    front = pareto(df, sp.objectives)
    assert front["pareto"].any()
    again = sweep(sp, tmp_path / "r", workers=1, resume=True)
    assert again["evaluated"] == 0 and len(Store(tmp_path / "r").read()) == 6


def test_dask_backend_equals_local(tmp_path, monkeypatch):
    """A running Dask scheduler (`--address`) gives the rows the in-process run gives; its
    chunks are re-split for the cluster's 3 threads, not the 1 worker asked."""
    from dask.distributed import LocalCluster

    from chipforge.explore import backends

    clock = {"min": "1 GHz", "max": "2 GHz", "steps": 200}
    sp = space_from_dict(_space(params={"clock": clock}))
    sweep(sp, tmp_path / "local", workers=1)
    seen = []
    real = backends._drive

    def drive(submit, chunks, inflight):
        seen.append(len(chunks))
        return real(submit, chunks, inflight)

    monkeypatch.setattr(backends, "_drive", drive)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False) as cluster:
        addr = cluster.scheduler_address
        sweep(sp, tmp_path / "dask", backend="dask", workers=1, address=addr)
    assert seen == [13]  # 200 points for 3 threads: 16 per chunk (for 1 worker: 8 of 25)
    assert Store(tmp_path / "dask").read().equals(Store(tmp_path / "local").read())


class _Stop(Exception):
    pass


def test_interrupted_nsga2_search_resumes_to_the_clean_result(tmp_path):
    """Stopped after two generations and resumed (with another worker count), an NSGA-II
    search stores exactly the points and rows of an uninterrupted one."""
    sp = space_from_dict(
        _space(
            params={"matrix.rows": [64, 128, 256], "clock": {"min": "1 GHz", "max": "2 GHz"}},
            sampler={"method": "nsga2", "n": 40, "seed": 3},
        )
    )
    calls = []

    def stop(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        sweep(sp, tmp_path / "cut", workers=1, chunk=8, on_rows=stop)
    kept = len(Store(tmp_path / "cut").read())  # 2 generations of 8 (fewer if one repeats)
    assert 8 < kept <= 16
    again = sweep(sp, tmp_path / "cut", workers=2, chunk=8, resume=True)
    sweep(sp, tmp_path / "clean", workers=1, chunk=8)
    clean = Store(tmp_path / "clean").read()
    assert again["evaluated"] == len(clean) - kept  # nothing stored was evaluated again
    assert Store(tmp_path / "cut").read().equals(clean)


def _resume_space(tmp_path) -> Path:
    f = tmp_path / "space.toml"
    f.write_text(
        textwrap.dedent(f"""
        [base]
        chip = "forge-n3"
        [params]
        "matrix.rows" = [64, 128, 256]
        "matrix.cols" = [128, 256]
        clock = {{ min = "1 GHz", max = "2 GHz", steps = 40 }}
        cores = [2, 4, 8]
        [[workloads]]
        spec = "{LAYER}"
        [objectives]
        tokens_per_s = "max"
        unit_cost_usd = "min"
        [constraints]
        max_tdp_w = 1500
        """)
    )
    return f


def _cli(*args):
    return [
        sys.executable,
        "-m",
        "chipforge",
        "sweep",
        *map(str, args),
        "--workers",
        "1",
        "--flush-s",
        "0.05",
    ]


def _table(store):
    df = Store(store).read()
    assert not df["id"].duplicated().any()
    return df


def _run_and_kill(space: Path, store: Path) -> int:
    """Start the CLI sweep, SIGKILL it once two parts are stored; the rows it kept."""
    proc = subprocess.Popen(_cli(space, "--store", store))
    deadline = time.time() + 120  # a loaded 2-core CI machine starts Python slowly
    while time.time() < deadline and len(list(store.glob("part-*.parquet"))) < 2:
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(_table(store))


def test_sigkill_then_resume_equals_clean_run(tmp_path):
    space = _resume_space(tmp_path)
    for attempt in range(3):  # an idle machine may finish before the kill lands: try again
        killed = tmp_path / f"killed{attempt}"
        partial = _run_and_kill(space, killed)
        if partial < 720:
            break
    assert 0 < partial < 720  # it really was stopped mid-run
    subprocess.run(_cli(space, "--store", killed, "--resume"), check=True)
    clean = tmp_path / "clean"
    subprocess.run(_cli(space, "--store", clean), check=True)
    a, b = _table(killed), _table(clean)
    assert len(a) == 720
    assert a.equals(b)


def test_example_runs_small_and_writes_the_plot(tmp_path):
    ex = ROOT / "examples" / "forge_n3_serving.toml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "chipforge",
            "sweep",
            str(ex),
            "--store",
            str(tmp_path / "r"),
            "--n",
            "12",
            "--workers",
            "1",
            "--flush-s",
            "0.05",
        ],
        check=True,
    )
    png = tmp_path / "charts"  # --png is a folder, as in every command
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "chipforge",
            "sweep",
            "show",
            str(tmp_path / "r"),
            "--pareto",
            "--png",
            str(png),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (png / "pareto.png").stat().st_size > 1000
    assert '"usd_per_million_tokens"' in r.stdout
    assert json.loads(r.stdout)["methods"]["site_method"] == {"datacenter.evaluate_site": 12}
    df = Store(tmp_path / "r").read()
    assert set(df["site_method"].dropna()) == {"datacenter.evaluate_site"}
    assert set(df["serving_method"]) == {"cluster.plan_serving"}


def test_search_keeps_to_steps_and_counts_add_up(tmp_path):
    """NSGA-II keeps a range with `steps` on its grid, and the summary accounts for every point:
    points = evaluated + skipped + repeated, evaluated = ok + infeasible + failed."""
    sp = space_from_dict(
        _space(
            params={
                "matrix.rows": [64, 128],
                "clock": {"min": "1 GHz", "max": "2 GHz", "steps": 5},
            },
            sampler={"method": "nsga2", "n": 24, "seed": 1},
        )
    )
    counts = sweep(sp, tmp_path / "s", workers=1, chunk=4)
    df = Store(tmp_path / "s").read()
    assert set(df["p.clock"]) <= {1e9, 1.25e9, 1.5e9, 1.75e9, 2e9}
    assert counts["points"] == counts["evaluated"] + counts["skipped"] + counts["repeated"] == 24
    assert counts["repeated"] > 0  # 10 distinct points: a 24-point search must repeat some
    assert counts["evaluated"] == counts["ok"] + counts["infeasible"] + counts["failed"] == len(df)
