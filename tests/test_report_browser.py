"""Every report kind, and the demo's whole-story page, opened in headless Chromium: no console
errors, every chart rendered, no report_warning.

Screenshots and the pages land in test-artifacts/report/ (gitignored). Skips only where no
Chromium binary can be found (.ci/run installs Debian's `chromium` when it can).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chipforge.report.demo import write_demo_report
from chipforge.report.html import render_sections

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "report"
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (apt-get install chromium; .ci/run does this when run as root)",
)


def _open(page: Path, profile: Path) -> tuple[str, str]:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
        "--window-size=1280,4000",
        f"--screenshot={page.with_suffix('.png')}",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def demo_data() -> dict:
    """The JSON dict `chipforge demo` builds (its scenarios on its chips), built in-process."""
    from chipforge.cli.commands import DEMO_CHIPS, DEMO_SCENARIOS
    from chipforge.perf import estimate
    from chipforge.spec import load_chip
    from chipforge.workload import parse_workload

    chips = [load_chip(c) for c in DEMO_CHIPS]
    data = {"chips": list(DEMO_CHIPS), "scenarios": []}
    for title, text in DEMO_SCENARIOS:
        graph = parse_workload(text)
        results = [estimate(graph, c).to_dict() for c in chips]
        data["scenarios"].append({"title": title, "workload": text, "results": results})
    return data


def test_every_report_and_the_demo_render_in_chromium(tmp_path):
    from test_report import chart_specs, samples

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Two Chromium runs, not one per kind (each start parses 4.9 MB of plotly.js): a page of
    # every kind as a section (the same renderer as the one-kind pages), and the demo's page.
    pages = {"kinds": ARTIFACTS / "kinds.html"}
    sections = [(kind, f"{kind} report", data) for kind, data in samples().items()]
    pages["kinds"].write_text(render_sections(sections, "every report kind"), encoding="utf-8")
    pages["demo"] = ARTIFACTS / "demo.html"
    write_demo_report(pages["demo"], demo_data())
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(
            zip(pages, pool.map(lambda k: _open(pages[k], tmp_path / k), pages), strict=True)
        )
    for kind, (dom, log) in runs.items():
        body = re.search(r"<body[^>]*>", dom)
        assert body, f"{kind}: Chromium returned no DOM; log:\n{log[-2000:]}"
        attrs = dict(re.findall(r'data-(\w+)="(\d+)"', body.group(0)))
        expected = len(chart_specs(pages[kind].read_text()))
        assert int(attrs["charts"]) == expected > 20, kind
        assert int(attrs["rendered"]) == expected, f"{kind}: {attrs} charts rendered"
        assert dom.count('class="js-plotly-plot"') + dom.count('js-plotly-plot"') >= expected, kind
        assert dom.count("main-svg") >= expected, kind
        assert attrs["errors"] == "0", f"{kind}: page errors"
        assert attrs["warnings"] == "0", f"{kind}: report_warning on the page"
        console = [ln for ln in log.splitlines() if "Uncaught" in ln or ":ERROR:CONSOLE" in ln]
        assert not console, f"{kind}: console errors: {console}"
        assert pages[kind].with_suffix(".png").stat().st_size > 10_000, kind
