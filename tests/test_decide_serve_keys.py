"""A decide scenario's [[workload.serve]] refuses keys it does not read (one line, exit 2)."""

import pytest

from chipforge.cli import main


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("epp = 16", "workload.serve llama3-8b: unknown key `epp`"),
        # a `serve` flag is read now (cluster.serve_options), and refused as `serve` refuses it
        ("ep = 16", "workload.serve llama3-8b: `ep` 16 needs a MoE model"),
    ],
)
def test_an_unknown_serve_key_is_refused_not_ignored(tmp_path, capsys, line, words):
    """`ep = 16` (a `chipforge serve` flag) was read as nothing and the run priced without it."""
    (tmp_path / "s.toml").write_text(
        '[scenario]\nname = "s"\nstart = "2026Q1"\nend = "2027Q4"\n'
        '[build]\nchip = "forge-n3"\ndesign_start = "2026Q1"\n[buy]\nchip = "h100"\n'
        '[[sites]]\ngrid = "50MW"\nonline = "2026Q1"\n'
        '[[workload.serve]]\nmodel = "llama3-8b"\ntokens_per_day = "1T"\n' + line + "\n"
    )
    with pytest.raises(SystemExit) as e:
        main(["decide", str(tmp_path / "s.toml")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert words in err
