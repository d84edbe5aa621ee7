"""`chipforge sweep SPACE.toml` runs a design-space sweep or search into a Parquet store;
`chipforge sweep show DIR [--pareto] [--html PATH] [--png PATH]` reads one back.

One command whose first argument is a space file or the word `show` (a Typer group with a
default sub-command would make `sweep SPACE.toml` ambiguous)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chipforge.cli import JsonOpt, OutOpt, TrustOpt, app, emit, trusting
from chipforge.cli.reportopts import HtmlOpt, PngOpt, write_reports
from chipforge.display import label, show
from chipforge.errors import ChipforgeError


def _progress(enabled: bool):
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    task = bar.add_task("sweep", total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


def run_cmd(
    space_file: str,
    *,
    store: str,
    backend: str,
    address: str | None,
    workers: int,
    resume: bool,
    n: int | None,
    flush_s: float,
    as_json: bool,
    out: Path | None,
    html: Path | None = None,
    png: Path | None = None,
    tls: tuple[Path | None, Path | None, Path | None] = (None, None, None),
    connect_timeout: float = 10.0,
    trust_pickle: bool = False,
) -> None:
    from rich.console import Console

    from chipforge.explore import load_space, sweep
    from chipforge.explore.dask_client import security_for
    from chipforge.explore.run import cap_workers

    # every input error before any work
    space = load_space(space_file, trust_pickle=trusting(trust_pickle))
    if address is None and any(tls):
        raise ChipforgeError("`--tls-ca/--tls-cert/--tls-key` need a tls:// `--address`")
    if address is not None and backend != "dask":  # it would be ignored
        raise ChipforgeError(f"`--address` needs `--backend dask`, not {backend!r}")
    security = security_for(address, *tls) if address else None
    workers, note = cap_workers(workers, address)
    if note:
        Console(stderr=True).print(f"note: {note}", markup=False, highlight=False)
    bar, cb = _progress(Console(stderr=True).is_terminal and not as_json)
    opts = dict(
        backend=backend, workers=workers, address=address, resume=resume, n=n, flush_s=flush_s
    )
    opts.update(security=security, connect_timeout=connect_timeout)
    if bar:
        with bar:
            counts = sweep(space, store, on_rows=cb, **opts)
    else:
        counts = sweep(space, store, **opts)
    counts["store"] = store
    table = Table(title=f"sweep {space_file} ({space.base.name}) -> {store}")
    table.add_column("item")
    table.add_column("value", justify="right")
    for k, v in counts.items():
        table.add_row(label(k), show(k, v))
    if html is not None or png is not None:
        report_data(store, front_only=False, html=html, png=png)
    emit({**counts, "base_chip": space.base.name}, [table], as_json=as_json, out=out)


def _records(df) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in df.to_dict("records")
    ]


def show_cmd(
    directory: str,
    *,
    front_only: bool,
    html: Path | None,
    png: Path | None,
    as_json: bool,
    out: Path | None,
) -> None:
    data, ranked, objectives, counts, methods, df = report_data(
        directory, front_only=front_only, html=html, png=png
    )
    params = [c for c in df.columns if c.startswith("p.")]
    table = Table(
        title=f"{'Pareto front' if front_only else 'feasible points'} of {directory} "
        f"({', '.join(f'{k}: {v}' for k, v in counts.items())})"
        + "".join(f"; {c}: {', '.join(m)}" for c, m in methods.items())
    )
    for col in ["id", *params, *objectives]:
        table.add_column(label(col.removeprefix("p.").replace(".", "_")), justify="right")
    for r in data["rows"][:50]:
        table.add_row(*[show(c.split(".")[-1], r[c]) for c in ["id", *params, *objectives]])
    emit(data, [table], as_json=as_json, out=out)


def report_data(directory: str, *, front_only: bool, html: Path | None, png: Path | None):
    """A store's rows ranked by Pareto front, with the HTML report and PNG plot written when
    asked (`png` is a folder: pareto.png inside it)."""
    from chipforge.explore import Store, pareto

    st = Store(directory)
    df = st.read()
    given = st.meta().get("objectives")
    table = given if isinstance(given, dict) else {}
    objectives = {k: v for k, v in table.items() if k in df.columns and v in ("min", "max")}
    bad = [str(k)[:40] for k in table if k not in objectives]
    why = (f"objectives {', '.join(bad[:5])} are not the store's columns with min or max"
           if bad else '`objectives` is not a table of column = "min" or "max"')  # fmt: skip
    if bad or (given and not table):  # damaged (Store.meta says so when it cannot be read)
        Console(stderr=True, soft_wrap=True).print(
            f"warning: store {directory[:120]!r}: space.json's {why}; left out of the Pareto front",
            style="yellow",
            markup=False,
        )
    ranked = pareto(df, objectives)
    shown = ranked[ranked["pareto"]] if front_only else ranked
    counts = df["status"].value_counts().to_dict()
    methods = {  # which model gave the system objectives (real or stand-in), by row count
        c: df[c].value_counts().to_dict() for c in df.columns if c.endswith("_method")
    }
    data = {
        "objectives": objectives,
        "counts": counts,
        "methods": methods,
        "rows": _records(shown[["id", *[c for c in shown.columns if c != "id"]]]),
    }
    write_reports("sweep", {**data, "rows": _records(ranked)}, html, None)
    if png and objectives:
        from chipforge.atomic import output_dir
        from chipforge.explore.pareto import plot_png

        plot_png(ranked, objectives, output_dir(png, "--png") / "pareto.png")
    return data, ranked, objectives, counts, methods, df


@app.command("sweep")
def sweep_command(
    target: Annotated[str, typer.Argument(help="space TOML file, or `show`")],
    directory: Annotated[str | None, typer.Argument(help="with `show`: the store folder")] = None,
    store: Annotated[str, typer.Option("--store", help="result folder")] = "results",
    backend: Annotated[str, typer.Option("--backend", help="local (process pool) or dask")] = (
        "local"
    ),
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Dask scheduler tcp:// or tls://host:8786 (it must be trusted: Dask sends "
            "pickles); none: a private TLS LocalCluster",
        ),
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option("--tls-ca", help="tls:// --address: CA certificate (PEM)")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="tls:// --address: client certificate")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="tls:// --address: client private key")
    ] = None,
    connect_timeout: Annotated[
        float,
        typer.Option("--connect-timeout", help="seconds to reach --address and find a worker"),
    ] = 10.0,
    workers: Annotated[int, typer.Option("--workers", help="processes; 0: one per core")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="continue a stopped sweep")] = False,
    n: Annotated[int | None, typer.Option("--n", help="override the sampler's budget")] = None,
    flush_s: Annotated[
        float, typer.Option("--flush-s", help="write a store part at most every this many s")
    ] = 1.0,
    front: Annotated[bool, typer.Option("--pareto", help="show: only the Pareto front")] = False,
    html: HtmlOpt = None,
    png: PngOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    trust_pickle: TrustOpt = False,
) -> None:
    """Sweep or search a design space (`sweep SPACE.toml`), or show a store (`sweep show DIR`)."""
    if target == "show":
        if not directory:
            raise ChipforgeError("`sweep show` needs the store folder, e.g. sweep show results/")
        show_cmd(directory, front_only=front, html=html, png=png, as_json=as_json, out=out)
        return
    if directory:
        raise ChipforgeError(
            f"`sweep` takes one space file, not also {directory!r}; "
            "use --store for the result folder"
        )
    run_cmd(
        target,
        store=store,
        backend=backend,
        address=address,
        workers=workers,
        resume=resume,
        n=n,
        flush_s=flush_s,
        as_json=as_json,
        out=out,
        html=html,
        png=png,
        tls=(tls_ca, tls_cert, tls_key),
        connect_timeout=connect_timeout,
        trust_pickle=trust_pickle,
    )
