"""The top-level Python API: `import chipforge as cf` stays light (the API loads on first use),
its docstring examples run, and it returns what the CLI prints."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import chipforge as cf
from chipforge.cli import app


@pytest.mark.parametrize(
    "module", ["chipforge.api", "chipforge.workload.resolve", "chipforge.display"]
)
def test_docstring_examples_run(module):
    mod = __import__(module, fromlist=["_"])
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_import_chipforge_is_light():
    code = (
        "import sys, chipforge; "
        "print(sorted(m for m in sys.modules if m.startswith(('chipforge.', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []
    assert set(cf.API) <= set(dir(cf))


def test_api_returns_what_the_cli_prints(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "--chip", "forge-n3", "--workload", "gpt2", "--json"])
    assert json.loads(r.stdout) == json.loads(json.dumps(cf.evaluate("forge-n3", "gpt2").to_dict()))
    r = CliRunner().invoke(app, ["datacenter", "--chip", "forge-n3", "--power", "50MW", "--json"])
    assert json.loads(r.stdout)["tco_usd_per_year"] == pytest.approx(
        cf.site("forge-n3", "50MW")["tco_usd_per_year"]
    )
    with pytest.raises(AttributeError):
        cf.no_such_function  # noqa: B018
