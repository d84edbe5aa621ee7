"""A scenario whose first quarters deliver nothing (sites online a year after the start)."""

import json

from chipforge.cli import main


def test_quarters_before_any_output_are_null_not_nan(tmp_path, capsys):
    """The cumulative cost per PFLOP-hour has no value before the first output: it was NaN,
    which the printed-result check turned into an internal error (exit 3)."""
    (tmp_path / "late.toml").write_text(
        '[scenario]\nname = "late"\nstart = "2026Q1"\nend = "2027Q4"\nsamples = 64\n'
        '[build]\nchip = "forge-n3"\ndesign_start = "2026Q1"\n[buy]\nchip = "h100"\n'
        '[[sites]]\ngrid = "50MW"\nonline = "2027Q1"\n'
        '[[workload.serve]]\nmodel = "llama3-8b"\ntokens_per_day = "1T"\nstart = "2027Q1"\n'
    )
    try:
        main(["decide", str(tmp_path / "late.toml"), "--json"])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    data = json.loads(capsys.readouterr().out)
    p50 = data["cumulative_usd_per_pflop_hour"]["buy"]["p50"]
    assert p50[:4] == [None] * 4 and all(v > 0 for v in p50[4:])
