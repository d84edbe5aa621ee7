"""`chipforge show` states what train and serve use of a chip beyond its peaks: the sustained
clock (--sustained-clock) and the scale-up domain of its default topology."""

import json

import pytest

from chipforge.cli import main


def run(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(["show", *args])
    out = capsys.readouterr()
    assert e.value.code in (0, None), out.err
    return out.out


def test_sustained_clock_and_scale_up_domain(capsys):
    out = run(capsys, "a100")
    assert "sustained clock" in out and "1.305 GHz" in out
    assert "8 chips (dgx-a100)" in out
    data = json.loads(run(capsys, "trainium2", "--json"))
    assert data["scale_up_domain"] == {"topology": "trn2-ultraserver", "chips": 64}
    assert "sustained clock" not in run(capsys, "h100")  # none stated
