"""Each report kind opened in headless Chromium: no console errors, every chart rendered.

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

from chipforge.report import write_report
from chipforge.report.plans import BUILDERS

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
        "--window-size=1280,2400",
        f"--screenshot={page.with_suffix('.png')}",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def test_every_report_renders_in_chromium(tmp_path):
    from test_report import samples

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages = {}
    for kind, data in samples().items():
        pages[kind] = ARTIFACTS / f"{kind}.html"
        write_report(pages[kind], kind, data)
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(
            zip(pages, pool.map(lambda k: _open(pages[k], tmp_path / k), pages), strict=True)
        )
    for kind, (dom, log) in runs.items():
        body = re.search(r"<body[^>]*>", dom)
        assert body, f"{kind}: Chromium returned no DOM; log:\n{log[-2000:]}"
        attrs = dict(re.findall(r'data-(\w+)="(\d+)"', body.group(0)))
        expected = len(BUILDERS[kind](samples()[kind]))
        assert int(attrs["charts"]) == expected > 0, kind
        assert int(attrs["rendered"]) == expected, f"{kind}: {attrs} charts rendered"
        assert dom.count('class="js-plotly-plot"') + dom.count('js-plotly-plot"') >= expected, kind
        assert dom.count("main-svg") >= expected, kind
        assert attrs["errors"] == "0", f"{kind}: page errors"
        console = [ln for ln in log.splitlines() if "Uncaught" in ln or ":ERROR:CONSOLE" in ln]
        assert not console, f"{kind}: console errors: {console}"
        assert pages[kind].with_suffix(".png").stat().st_size > 10_000, kind
