"""README figures come from one place.

- Every README table that reports measurements is preceded by a marker
  `<!-- from benchmarks/results/FILE.md[: col; col; ...] -->`: the benchmark that measured
  it wrote FILE.md, and the README's rows equal that file's table (projected onto the
  listed columns, in that order; the README may rename the headers).
- The demo's figures equal the README's demo table: the model `make demo` trains (its
  exact command, read from the Makefile), exported as `make demo` exports it, gives the
  float and deployed accuracy the table's seed-0 row states. With the kernels pinned (the
  CLI's default, ahsar_deploy/kernels.py) they are equal to the digit on any x86-64 CPU;
  with AHSAR_KERNELS=native the weights depend on the CPU, and the figures are checked
  within NATIVE_TOLERANCE_PP instead (the README states the spread).
"""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- from (benchmarks/results/[\w.-]+\.md)(?::\s*(.*?))?\s*-->")
# native kernels: across the native kernel paths and seeds measured (benchmarks/results/
# reproducibility.md, e2e_digits.md) the demo's figures spread over about 1.4 pp
NATIVE_TOLERANCE_PP = 2.0
# tables that state facts, options or file formats, not measurements
NOT_MEASURED = ("| example |", "| keys |", "| `--target` |", "| `spinnaker` |", "| file |", "| backend (`ahsar run",
                "| cause |", "| figure |")


def _tables(lines: list[str]) -> list[tuple[int, list[str]]]:
    """Markdown tables outside fenced code blocks (examples of output): (first line index, rows)."""
    out, i, fenced = [], 0, False
    while i < len(lines):
        if lines[i].startswith("```"):
            fenced = not fenced
        if lines[i].startswith("|") and not fenced:
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append((i, lines[i:j]))
            i = j
        else:
            i += 1
    return out


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _readme_tables():
    lines = (REPO / "README.md").read_text().splitlines()
    for start, table in _tables(lines):
        above = next((lines[k] for k in range(start - 1, max(start - 4, -1), -1) if lines[k].strip()), "")
        yield start + 1, table, MARKER.search(above)


def test_every_measured_readme_table_names_its_results_file():
    missing = [f"README.md:{ln}: {t[0][:60]}" for ln, t, m in _readme_tables()
               if m is None and not t[0].startswith(NOT_MEASURED)]
    assert not missing, "tables without a `<!-- from benchmarks/results/... -->` marker:\n" + "\n".join(missing)


@pytest.mark.parametrize("ln,table,marker", [t for t in _readme_tables() if t[2] is not None],
                         ids=lambda v: str(v) if isinstance(v, int) else "")
def test_readme_table_equals_its_results_file(ln, table, marker):
    path = REPO / marker.group(1)
    assert path.is_file(), f"README.md:{ln}: {marker.group(1)} does not exist (run its benchmark)"
    columns = [c.strip() for c in marker.group(2).split(";")] if marker.group(2) else None
    rows = [_cells(r) for r in table[2:]]
    for _, source in _tables(path.read_text().splitlines()):
        head = _cells(source[0])
        if columns is None and len(head) != len(rows[0]) or columns and not set(columns) <= set(head):
            continue
        pick = [head.index(c) for c in columns] if columns else list(range(len(head)))
        projected = [[_cells(r)[k] for k in pick] for r in source[2:]]
        if rows == projected[:len(rows)] or all(r in projected for r in rows):
            return
    pytest.fail(f"README.md:{ln}: table {table[0][:60]} is not the one in {marker.group(1)}"
                + (f" (columns {columns})" if columns else ""))


def _demo_commands() -> dict[str, list[str]]:
    """The demo's `ahsar train` and `ahsar-export` arguments and SAMPLES, from the Makefile."""
    text = (REPO / "Makefile").read_text()
    recipe = text[text.index("\ndemo:"):].split("\n\n")[0]
    out = {"samples": [re.search(r"^SAMPLES\s*\?=\s*(\d+)", text, re.M).group(1)]}
    for line in recipe.splitlines():
        words = shlex.split(line.strip().replace("$(BUILD)", "BUILD"))
        if words and words[0].endswith("/ahsar") and words[1] == "train":
            out["train"] = words[2:]
        elif words and words[0].endswith("/ahsar-export"):
            out["export"] = words[1:]
    return out


def test_demo_figures_equal_readme_demo_table(tmp_path):
    """As `make demo` runs them: the installed commands in new processes, with the
    machine's own thread count and CPU."""
    import subprocess
    import sys

    from ahsar_deploy import build, emulator, kernels
    from ahsar_deploy.api import load_source
    cmd = _demo_commands()
    train = [str(tmp_path / "model.pt") if a == "BUILD/model.pt" else a for a in cmd["train"]]
    export = [str(tmp_path / a[len("BUILD/"):]) if a.startswith("BUILD/") else a for a in cmd["export"]]
    bin_dir = Path(sys.executable).parent
    for argv in ([bin_dir / "ahsar", "train", *train, "-q"], [bin_dir / "ahsar-export", *export, "-q"]):
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
    out = Path(export[export.index("-o") + 1])
    graph, _ = build.load(out)
    x, y = build.eval_inputs(graph, None, int(cmd["samples"][0]))
    deployed = 100 * np.mean(emulator.run(graph, x)[-1].sum(axis=1).argmax(axis=1) == y)
    src = emulator.run(load_source(out, graph), x, integer=False)
    floating = 100 * np.mean(src[-1].sum(axis=1).argmax(axis=1) == y)
    row = next(_cells(r) for ln, t, m in _readme_tables() if m and "e2e_digits" in m.group(1)
               for r in t[2:] if _cells(r)[0] == "0")
    head = next(_cells(t[0]) for ln, t, m in _readme_tables() if m and "e2e_digits" in m.group(1))
    if kernels.wanted():   # the subprocesses ran pinned, and so does this one (conftest)
        assert kernels.state()["pinned"]
        assert f"{floating:.2f}" == row[head.index("float %")], (floating, row)
        assert f"{deployed:.2f}" == row[head.index("emulator %")], (deployed, row)
    else:
        assert abs(floating - float(row[head.index("float %")])) <= NATIVE_TOLERANCE_PP, (floating, row)
        assert abs(deployed - float(row[head.index("emulator %")])) <= NATIVE_TOLERANCE_PP, (deployed, row)
    assert row[head.index("Lava %")] == row[head.index("emulator %")]   # Lava = emulator, spike for spike
