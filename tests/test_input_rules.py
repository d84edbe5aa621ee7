"""One rule each for what a user hands the command line: a GROUP=N list, a path named inside
a file, an output that is also an input; and the studio's bounded link store. In process
through `chipforge.cli.main` (the real entry point and its guard)."""

from __future__ import annotations

import pytest
from test_hostile import assert_user_error, cli


@pytest.mark.parametrize(
    ("caps", "words"),
    [
        ("dp=8,dp=4", ["--nccl-ctas.dp", "given twice"]),  # the last one silently won
        ("dp=8,pp", ["--nccl-ctas", "GROUP=N", "'pp'"]),
        ("dp=x", ["--nccl-ctas dp", "integer"]),
        ("tp=4", ["--nccl-ctas", "GROUP one of"]),
    ],
)
def test_train_nccl_ctas_is_parsed_as_every_key_value_list(caps, words):
    """`--nccl-ctas` had its own GROUP=N parser: a group given twice kept the last value."""
    code, _, err = cli("train", "--chip", "gb200", "--model", "llama3-8b", "--chips", "8",
                       "--nccl-ctas", caps)  # fmt: skip
    assert_user_error(code, err, *words)
