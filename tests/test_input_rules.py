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


def test_studio_compresses_an_upload_once_when_a_link_asks_for_it(monkeypatch):
    """`share` recompressed the uploaded file (zlib level 9) on every edit of the page."""
    pytest.importorskip("dash")
    from chipforge.studio import compute

    monkeypatch.setattr(compute, "_UPLOADS", {})
    calls = []
    real = compute.zlib.compress
    monkeypatch.setattr(compute.zlib, "compress", lambda *a: calls.append(1) or real(*a))
    key = compute.keep(b'name = "mine"\n', "chip")
    assert not calls  # kept, not compressed
    links = [compute.share(key, "chip") for _ in range(3)]
    assert len(calls) == 1 and links[0] == links[2] and set(links[0]) == {"chipz"}
    raw = compute.base64.urlsafe_b64decode(links[0]["chipz"] + "=" * (-len(links[0]["chipz"]) % 4))
    assert compute.zlib.decompress(raw) == b'name = "mine"\n'
