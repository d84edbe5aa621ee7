"""Flags that only mean something beside another one are refused alone (one line, exit 2),
not priced as if they were not given."""

import pytest

from chipforge.cli import main

MOE = "llm:qwen3-30b-a3b,layers=4"


def fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_fp8_recipe_needs_fp8(capsys):
    err = fails(capsys, "train", "--chip", "h100", "--model", MOE, "--chips", "8",
                "--fp8-recipe", "block")  # fmt: skip
    assert "--fp8-recipe block needs --dtype fp8, not bf16" in err
