"""The command line: JSON contracts, one-line errors with exit 2, determinism."""

import json
import subprocess
import sys

import pytest

OP_KEYS = {"time_s", "flops", "achieved_flops_per_s", "utilization", "bound", "energy_j"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chipforge", *args], capture_output=True, text=True, timeout=120
    )


def test_evaluate_gemm_json():
    out = run(
        "evaluate",
        "--chip",
        "h100",
        "--workload",
        "gemm:m=6144,n=17920,k=2816,dtype=bf16",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert OP_KEYS | {"ops", "fits_in_memory"} <= set(data)
    assert data["ops"] and all(set(op) >= OP_KEYS for op in data["ops"])
    assert data["bound"] == "compute" and data["fits_in_memory"] is True


def test_evaluate_is_deterministic():
    args = (
        "evaluate",
        "--chip",
        "forge-n3",
        "--workload",
        "llm:llama3-70b,phase=decode,batch=64,context=4096",
        "--json",
    )
    assert run(*args).stdout == run(*args).stdout


def test_evaluate_beyond_memory_warns_and_still_costs():
    out = run(
        "evaluate",
        "--chip",
        "h100",
        "--workload",
        "llm:llama3-70b,phase=decode,batch=64,context=4096",
        "--json",
    )
    assert out.returncode == 0
    assert json.loads(out.stdout)["fits_in_memory"] is False
    assert "warning: working set" in out.stderr


def test_compare_and_show_and_presets():
    out = run("compare", "--chip", "forge-n3,h100,b200", "--workload", "llama3-8b", "--json")
    assert out.returncode == 0
    assert [r["chip"] for r in json.loads(out.stdout)["results"]] == ["forge-n3", "h100", "b200"]
    show = json.loads(run("show", "h100", "--json").stdout)
    assert show["peak_flops_per_s"]["bf16"] > 0 and show["machine_balance_flop_per_byte"]["fp8"]
    text = run("presets").stdout
    assert "forge-n3" in text and "llama3-405b" in text


def test_validate_json_contract():
    data = json.loads(run("validate", "--json").stdout)
    assert {"cases", "median_abs_error", "max_abs_error"} <= set(data)
    assert {"id", "predicted", "published", "error"} <= set(data["cases"][0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("show", "h10"),
            "error: `chip` must be a preset or a .toml file, not 'h10' (did you mean "
            "h100, h20, h800?); `chipforge presets` lists them",
        ),
        (
            ("evaluate", "--chip", "h100", "--workload", "gemm:m=8,n=8"),
            "error: `workload.k` is required: gemm:m=..,n=..,k=..",
        ),
        (
            ("evaluate", "--chip", "h100", "--workload", "llm:llama3-8b,batch=-1"),
            "error: `workload.batch` must be a positive integer, not '-1'",
        ),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert out.stderr.strip() == message
    assert "Traceback" not in out.stderr + out.stdout


def test_bad_toml_is_one_line(tmp_path):
    chip = tmp_path / "chip.toml"
    chip.write_text('name = "x"\nfamily = "forge"\nclock = "1 GHzz"\n')
    out = run("show", str(chip))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith(f"error: {chip}: `vendor` is required; add it (and ")


def test_unknown_option_exits_2():
    out = run("evaluate", "--chipz", "h100")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_demo_runs():
    out = run("demo")
    assert out.returncode == 0, out.stderr
    for name in ("forge-n3", "gb200", "h100", "b200", "tpu-v7", "prefill", "decode", "--details"):
        assert name in out.stdout
    assert len(out.stdout.splitlines()) < 40  # the answer on one screen
    out = run("demo", "--details")
    assert "backward" in out.stdout and "per op" in out.stdout
