"""The studio in a real browser: Debian's Chromium driven by Playwright (no browser download).

Opens every page, changes the chip's clock and sees the H100-relative speed move, uploads a
config.json (then in the URL), types a bad bandwidth and a bad link latency and sees each error
next to its field, adds a memory level in the form and removes it, sees the silicon tornado,
reopens a shared URL and a saved state file, opens a sweep point's chip in another tab from its
URL, and checks the console stayed clean.
Screenshots land in test-artifacts/studio/ (gitignored). Skips with a message where
/usr/bin/chromium or Playwright is missing (.ci/run installs Chromium when it runs as root).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "studio"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium (apt-get install chromium; .ci/run does this when run as root)",
)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    pytest.importorskip("dash", reason="the studio needs the `studio` extra")
    from test_studio import SPACE

    import chipforge as cf
    from chipforge.studio.server import make_server

    scenario = Path(__file__).resolve().parent.parent / "examples/decide/forge_vs_gb200.toml"
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "space.toml").write_text(SPACE)
    cf.sweep(folder / "space.toml", folder / "store", workers=1)
    srv, url = make_server(scenario=scenario, sweep=(folder / "space.toml", folder / "store"))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield url
    srv.shutdown()
    srv.server_close()


def _speed(page) -> float:
    text = page.inner_text("#speed-vs-h100")
    return float(re.search(r"([\d.]+)x the H100", text).group(1))


def _set(page, field: str, value: str) -> None:
    box = page.locator(f"#{field}")
    box.fill(value)
    box.press("Enter")


def test_the_studio_in_chromium(studio, tmp_path):
    from test_studio import HF

    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(HF))
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(30_000)
            page.goto(studio)
            page.wait_for_selector("#chip-figures table")
            page.screenshot(path=ARTIFACTS / "chip.png")

            # Run: a compute-bound prefill, so the clock moves the speed
            page.click("#tab-run")
            page.check("#phase input[value=prefill]")
            page.wait_for_function(
                "document.querySelector('#speed-vs-h100').innerText.includes('prefill')"
            )
            before, shown = _speed(page), page.inner_text("#speed-vs-h100")
            page.screenshot(path=ARTIFACTS / "run.png", full_page=True)

            page.click("#tab-chip")
            _set(page, "f-clock", "2.8 GHz")
            page.click("#tab-run")
            page.wait_for_function(
                "t => document.querySelector('#speed-vs-h100').innerText !== t",
                arg=shown,
            )
            after = _speed(page)
            assert after > before * 1.3, (before, after)

            # upload a config.json: the run is now that model
            page.set_input_files("#config-upload input[type=file]", str(config))
            page.wait_for_function(
                "document.querySelector('#config-msg').innerText.includes('2 layers')"
            )
            page.wait_for_function(
                "!document.querySelector('#speed-vs-h100').innerText.includes('llama3-8b')"
            )
            # the uploaded file is in the shareable URL (the URL callback may land after the
            # page's numbers: wait for it rather than read it at once)
            page.wait_for_function("location.search.includes('configz=')")
            page.click("#cycle-btn")  # the cycle engine on one layer of the uploaded model
            page.wait_for_selector("#cycle-table table")
            assert "cycle engine" in page.inner_text("#cycle-table")
            page.screenshot(path=ARTIFACTS / "run-config.png")

            # a validation error, shown next to its field
            page.click("#tab-chip")
            _set(page, "f-hbm-bandwidth", "-3 TB/s")
            page.wait_for_function(
                "document.querySelector('#err-hbm-bandwidth').innerText.includes("
                "'memory.0.bandwidth')"
            )
            assert page.inner_text("#err-clock") == ""
            page.screenshot(path=ARTIFACTS / "chip-error.png")
            _set(page, "f-hbm-bandwidth", "9.832 TB/s")
            page.wait_for_function("document.querySelector('#err-hbm-bandwidth').innerText === ''")
            _set(page, "f-link-latency", "5 W")  # a field beyond the main ones, its own error
            page.wait_for_function(
                "document.querySelector('#err-link-latency').innerText.includes('links.0.latency')"
            )
            _set(page, "f-link-latency", "1 µs")
            page.wait_for_function("document.querySelector('#err-link-latency').innerText === ''")
            # a memory level added in the form (its folded section opened): a larger die
            figures = page.inner_text("#chip-figures")
            page.click("#section-mem2-name summary")
            for field, value in (("kind", "sram"), ("capacity", "64 MiB"),
                                 ("bandwidth", "400 TB/s"), ("name", "regs")):  # fmt: skip
                _set(page, f"f-mem2-{field}", value)
            page.wait_for_function(
                "t => { const x = document.querySelector('#chip-figures').innerText;"
                " return x.includes('die area') && x !== t; }",
                arg=figures,
            )
            assert page.inner_text("#err-mem2-kind") == ""
            assert page.inner_text("#summary-mem2-name") == "memory level 2"
            page.screenshot(path=ARTIFACTS / "chip-level-added.png", full_page=True)
            _set(page, "f-mem2-name", "")  # and removed: the chip's figures again, folded
            page.wait_for_function(
                "t => document.querySelector('#chip-figures').innerText === t", arg=figures
            )
            page.wait_for_function("!document.querySelector('#section-mem2-name').open")
            assert "type a name to add it" in page.inner_text("#summary-mem2-name")

            for name, ready in (
                ("cluster", "#train-table table"),
                ("silicon", "#silicon-table table"),
                ("site", "#site-table table"),
                ("decide", "#decide-table table"),
            ):
                page.click(f"#tab-{name}")
                page.wait_for_selector(ready)
                page.wait_for_selector(f"#page-{name} .js-plotly-plot")
                page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
            page.click("#tab-silicon")  # the cost model's sensitivity, as the report's tornado
            page.wait_for_selector("#silicon-cost_tornado .js-plotly-plot")
            assert "defect density" in page.inner_text("#silicon-table")
            page.click("#tab-decide")

            with page.expect_download() as download:  # the page as the CLI's HTML report
                page.click("#export-html")
            assert download.value.suggested_filename == "studio-decide.html"
            download.value.save_as(ARTIFACTS / "studio-decide.html")

            # the URL is the state: a fresh tab on it shows the edited clock and the page
            page.wait_for_function("location.search.includes('page=decide')")
            shared = page.url
            assert "f-clock=2.8+GHz" in shared and "page=decide" in shared
            other = browser.new_page()
            other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            other.goto(shared)
            other.wait_for_selector("#decide-table table")
            assert other.input_value("#f-clock") == "2.8 GHz"
            with other.expect_download() as download:  # a saved state file reopens it too
                other.click("#state-save")
            state = ARTIFACTS / "studio-state.json"
            download.value.save_as(state)
            fresh = browser.new_page()
            fresh.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            fresh.goto(studio)
            fresh.wait_for_selector("#chip-figures table")
            with fresh.expect_navigation():
                fresh.set_input_files("#state-upload input[type=file]", str(state))
            fresh.wait_for_selector("#decide-table table")
            assert fresh.input_value("#f-clock") == "2.8 GHz"

            # Sweep: the Pareto front; a click on a point opens its chip on the Chip page
            page.click("#tab-sweep")
            point = page.locator("#sweep-pareto .scatterlayer .trace").last.locator("path.point")
            point.first.wait_for()
            box = point.first.bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_function(
                "document.querySelector('#chip-upload-msg').innerText.includes('sweep')"
            )
            page.wait_for_selector("#page-chip", state="visible")
            assert page.input_value("#f-clock") in ("1 GHz", "2 GHz")
            page.screenshot(path=ARTIFACTS / "sweep-opened.png")
            # that chip is a file of this studio's: the URL carries it, another tab opens it
            page.wait_for_function("location.search.includes('chipz=')")
            other = browser.new_page()
            other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            other.goto(page.url)
            other.wait_for_selector("#chip-figures table")
            assert other.input_value("#f-clock") == page.input_value("#f-clock")
            assert other.input_value("#f-name") == page.input_value("#f-name")
        finally:
            browser.close()
    assert errors == []
