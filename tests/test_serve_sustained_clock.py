"""`serve --sustained-clock`, as `train --sustained-clock`: the layers at the preset's
power-limited sustained clock; a chip that states none says the flag has no effect."""

import json

import pytest

from chipforge.cli import main

PREFILL = ("serve", "--model", "llm:llama3-8b,layers=4", "--chips", "1", "--tp", "1",
           "--concurrency", "1", "--isl", "8000", "--osl", "4", "--json")  # fmt: skip


def run(capsys, *args: str) -> tuple[dict, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    assert e.value.code in (0, None), out.err
    return json.loads(out.out), out.err


def test_compute_bound_prefill_slows_by_the_clock_ratio(capsys):
    boost, _ = run(capsys, *PREFILL, "--chip", "a100")
    held, err = run(capsys, *PREFILL, "--chip", "a100", "--sustained-clock")
    assert not err
    ratio = 1.41 / 1.305  # a100.toml: clock 1.41 GHz, sustained_clock 1.305 GHz
    assert 1.05 < held["ttft_s"] / boost["ttft_s"] <= ratio * 1.001
    assert held["tpot_s"] == pytest.approx(boost["tpot_s"], rel=0.01)  # memory-bound decode


def test_a_chip_without_a_sustained_clock_warns(capsys):
    boost, _ = run(capsys, *PREFILL, "--chip", "h100")
    same, err = run(capsys, *PREFILL, "--chip", "h100", "--sustained-clock")
    assert same == boost
    assert "--sustained-clock has no effect: h100 states no sustained_clock" in err


def test_train_says_so_too(capsys):
    _, err = run(capsys, "train", "--chip", "h100", "--model", "llm:llama3-8b,layers=4",
                 "--chips", "8", "--sustained-clock", "--json")  # fmt: skip
    assert "--sustained-clock has no effect: h100 states no sustained_clock" in err
