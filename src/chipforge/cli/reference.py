"""docs/cli.md, generated from the Typer app: every command, flag, type, default and help
(units are in the help text). `python -m chipforge.cli.reference` rewrites the page;
tests/test_cli_docs.py fails when it is stale and checks that a flag means one thing in every
command (`FLAG_MEANINGS`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

# A flag's one meaning: (click type name, words its help must contain)
FLAG_MEANINGS = {
    "--chip": ("text", "preset"),
    "--chips": ("int", ""),
    "--model": ("text", "config.json"),
    "--workload": ("text", "config.json"),
    "--out": ("path", "file"),
    "--html": ("path", "HTML"),
    "--png": ("path", "folder"),
    "--json": ("flag", "JSON"),
    "--trace": ("path", ""),
    "--sensitivity": ("flag", "tornado"),
    "--isl": ("int", "input (prompt) tokens per request"),
    "--osl": ("int", "output tokens per request"),
    "--tp": ("int", "tensor-parallel chips"),
    "--pp": ("int", "pipeline stages"),
    "--ep": ("int", "expert-parallel chips"),
    "--topology": ("text", "topology preset"),
}


def commands(app: typer.Typer | None = None) -> list[tuple[str, object]]:
    """(full name, command) for every command, sub-commands of groups included, sorted."""
    if app is None:
        from chipforge.cli import app
    root = typer.main.get_command(app)
    out: list[tuple[str, object]] = []

    def walk(prefix: str, cmd) -> None:
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            for name, sub in cmd.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            out.append((prefix, cmd))

    walk("", root)
    return sorted(out)


def options(cmd) -> list:
    """The visible options of a command (not --help)."""
    return [
        p
        for p in cmd.params
        if p.param_type_name == "option" and not p.hidden and "--help" not in p.opts
    ]


def kind(p) -> str:
    """An option's value type: flag, int, float, text, path (a list: `... (repeatable)`)."""
    if getattr(p, "is_flag", False):
        return "flag"
    ann = p.type_descriptor.annotation
    inner = getattr(ann, "__args__", None)
    if inner:  # list[str]
        return f"{_name(inner[0])} (repeatable)"
    return _name(ann)


def _name(ann) -> str:
    return {"str": "text", "int": "int", "float": "float", "bool": "flag"}.get(
        getattr(ann, "__name__", str(ann)), "path" if "Path" in str(ann) else str(ann)
    )


def _default(p) -> str:
    d = p.default
    if getattr(p, "is_flag", False):
        return "on" if d else "off"
    if d is None or d == () or (isinstance(d, list) and not d):
        return "-"
    return f"`{d}`"


def markdown() -> str:
    lines = [
        "# Command line reference",
        "",
        "Generated from the Typer app by `python -m chipforge.cli.reference` (a test fails when "
        "this page is stale). A flag means one thing in every command: `--chip` a preset name "
        "or chip TOML path (a comma list where a command compares), `--chips` a count, "
        "`--model` and `--workload` the one model vocabulary (presets, `llm:...`, a HuggingFace "
        "`config.json` or its folder; workloads also `gemm:`, `zoo:`, `.onnx`, `.pt2`), `--out` "
        "a file, `--html` an HTML file, `--png` a folder. Quantities take units (`1.2GW`, "
        "`100ms`, `15.6T`). `chipforge --version` prints the version. Exit codes: 0 done, 2 a "
        "user error (one line naming the field), 3 an internal error (one line; `--debug` "
        "anywhere on the command line, or CHIPFORGE_DEBUG=1, prints its traceback); see "
        "docs/security.md.",
        "",
    ]
    for name, cmd in commands():
        lines += [f"## chipforge {name}", ""]
        doc = (cmd.help or "").strip().split("\n\n")[0].replace("\n", " ")
        if doc:
            lines += [doc, ""]
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        if args:
            lines += [
                "Arguments: " + ", ".join(f"`{p.name.upper()}`" for p in args),
                "",
            ]
        opts = options(cmd)
        if opts:
            lines += ["| flag | type | default | meaning |", "|---|---|---|---|"]
            for p in opts:
                flag = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
                text = (p.help or "").replace("|", "\\|").replace("\n", " ")
                lines.append(f"| {flag} | {kind(p)} | {_default(p)} | {text} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"

if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOC
    from chipforge.atomic import atomic_write_text

    atomic_write_text(target, markdown())
    print(f"wrote {target}")
