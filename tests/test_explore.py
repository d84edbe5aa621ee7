"""Design-space exploration: input errors before work, infeasible/failed rows, Pareto front
against a brute-force reference, SIGKILL + resume equals a clean run, the example runs."""

from __future__ import annotations

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


def test_sigkill_then_resume_equals_clean_run(tmp_path, monkeypatch):
    space = _resume_space(tmp_path)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(space, "--store", killed))
    deadline = time.time() + 120  # a loaded 2-core CI machine starts Python slowly
    while time.time() < deadline and len(list(killed.glob("part-*.parquet"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(_table(killed))
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
    png = tmp_path / "pareto.png"
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
    assert png.stat().st_size > 1000 and '"site_tokens_per_s"' in r.stdout
