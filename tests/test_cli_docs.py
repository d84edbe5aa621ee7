"""The command line keeps one vocabulary: docs/cli.md is generated from the app (stale -> fail),
and a flag means the same thing, with the same type, in every command."""

from __future__ import annotations

from chipforge.cli.reference import DOC, FLAG_MEANINGS, commands, kind, markdown, options


def test_cli_reference_is_current():
    assert DOC.read_text() == markdown(), (
        "docs/cli.md is stale: run `python -m chipforge.cli.reference`"
    )


def test_a_flag_means_one_thing_everywhere():
    wrong = []
    for name, cmd in commands():
        for p in options(cmd):
            for flag in p.opts:
                if flag not in FLAG_MEANINGS:
                    continue
                want, word = FLAG_MEANINGS[flag]
                help_ = (p.help or "").lower()
                if kind(p) != want or word.lower() not in help_:
                    wrong.append(f"{name} {flag}: {kind(p)}, {p.help!r}")
    assert not wrong, "\n".join(wrong)


def test_every_command_prints_json_and_reports_where_it_has_one():
    names = dict(commands())
    for name, cmd in names.items():
        flags = {o for p in options(cmd) for o in p.opts}
        if name not in ("studio",):
            assert "--json" in flags, name
    for name in ("evaluate", "compare", "simulate", "cost", "train", "serve", "datacenter"):
        flags = {o for p in options(names[name]) for o in p.opts}
        assert {"--html", "--png", "--out"} <= flags, name
