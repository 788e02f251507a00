"""What a user is told the default backend is, in each place they can read it, is the one
they get (issue 30, item 8): `ahsar run --help`, the parser's default, ad.run's signature
and the README's backend table all name exporters.DEFAULT_BACKEND."""
import inspect
import re
from pathlib import Path

import ahsar_deploy as ad
from ahsar_deploy import cli
from exporters import BACKENDS, DEFAULT_BACKEND

README = Path(__file__).resolve().parents[1] / "README.md"


def _run_parser():
    sub = next(a for a in cli.parser()._actions if a.dest == "cmd")
    return sub.choices["run"]


def test_run_default_backend_is_the_same_in_help_parser_api_and_readme():
    p = _run_parser()
    backend = next(a for a in p._actions if a.dest == "backend")
    assert DEFAULT_BACKEND in BACKENDS
    assert backend.default == DEFAULT_BACKEND
    assert inspect.signature(ad.run).parameters["backend"].default == DEFAULT_BACKEND
    help_text = " ".join(p.format_help().split())
    assert f"default {DEFAULT_BACKEND}" in help_text
    assert "default lava" not in help_text
    rows = [r for r in README.read_text().splitlines() if "the default for `run`" in r]
    assert len(rows) == 1, "the README's backend table names the default once"
    assert re.match(rf"\| `{DEFAULT_BACKEND}` \|", rows[0]), rows[0]

