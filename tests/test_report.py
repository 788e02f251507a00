"""`ahsar report`: one self-contained report.html per build, rendered in headless Chromium."""
import json
import re
import shutil

import numpy as np
import pytest

from ahsar_deploy import report

# appended to a copy of the page: after the load event, logs how many images the page has,
# how many failed to decode, and how many sections, as a console line Chromium prints
PROBE = ('<script>window.addEventListener("load",()=>{const b=[...document.images].filter(i=>'
         '!(i.complete&&i.naturalWidth>0));console.log("AHSAR-PROBE images="+document.images.length+'
         '" broken="+b.length+" sections="+document.querySelectorAll("h2").length);});</script>')


def _render(page, tmp_path, height=2400):
    """Screenshot a copy of `page` with the probe; returns (probe counts, other console
    lines, the screenshot as an (H, W, 3) uint8 array)."""
    from PIL import Image
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    png = tmp_path / f"{page.stem}.png"
    log = report.screenshot(probed, png, height=height)
    console = [l for l in log.splitlines() if ":CONSOLE" in l]
    probe = [l for l in console if "AHSAR-PROBE" in l]
    assert len(probe) == 1, log[-2000:]
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", probe[0].split("AHSAR-PROBE", 1)[1])}
    return counts, [l for l in console if "AHSAR-PROBE" not in l], np.asarray(Image.open(png).convert("RGB"))


@pytest.fixture(scope="module")
def reported(small_build, tmp_path_factory):
    """A build with an emulator run and an energy report, and its report.html."""
    from ahsar_deploy import api
    out = tmp_path_factory.mktemp("report") / "b"
    shutil.copytree(small_build, out, ignore=shutil.ignore_patterns("run-*", "spikes-*", "energy*"))
    api.run(out, samples=24, backend="emulator")
    api.energy(out, samples=24, backend="emulator")
    return out, report.write(out, sample=3)


def test_report_is_self_contained_and_complete(reported):
    build, page = reported
    assert page == build / "report.html"
    text = page.read_text()
    for section in ("Model and source", "Calibration and fidelity", "Accuracy per backend",
                    "Rates, sparsity and energy", "Spikes"):
        assert f"<h2>{section}</h2>" in text, section
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)   # energy, raster, rates
    assert not re.search(r"(href|src)=\"(?!data:)", text) and "<link" not in text and "<script" not in text
    run = json.loads((build / "run-emulator.json").read_text())
    assert f"{100 * run['accuracy']:.2f} %" in text                  # accuracy of the run, as measured
    for chip in ("loihi", "loihi2 (estimate)", "truenorth", "spinnaker", "spinnaker2", "ANN int8 (45 nm)"):
        assert f"<td>{chip}</td>" in text, chip
    energy = json.loads((build / "energy.json").read_text())
    assert f"{energy['total_j_per_inference'] * 1e9:,.1f}" in text


def test_report_names_what_is_missing_or_unreadable(small_build, tmp_path, cli_inproc):
    out = tmp_path / "b"   # without what other tests' runs left in the shared build
    shutil.copytree(small_build, out, ignore=shutil.ignore_patterns("run-*", "spikes-*", "energy*"))
    code, stdout, err = cli_inproc("report", out)
    assert code == 0 and stdout.strip() == str(out / "report.html"), err
    text = (out / "report.html").read_text()
    assert "<code>ahsar run BUILD --backend emulator|lava|norse</code>" in text
    assert "<code>ahsar energy BUILD</code>" in text and "No spikes cached" in text
    (out / "run-lava.json").write_text("{not json")
    code, _, err = cli_inproc("report", out, "-o", tmp_path / "r.html")
    assert code == 0 and "warning: run-lava.json: unreadable" in err, err
    assert "Files not read" in (tmp_path / "r.html").read_text()
    code, _, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "5", "-q")
    assert code == 0, err
    (out / "report.html").unlink()
    code, _, err = cli_inproc("report", out, "--sample", "5")
    assert code == 1 and "--sample 5: spikes-emulator.npz holds samples 0..4" in err, err
    assert not (out / "report.html").exists()
    code, _, err = cli_inproc("report", tmp_path / "nothing")
    assert code == 1 and len(err.strip().splitlines()) == 1, err


needs_chromium = pytest.mark.skipif(report.chromium() is None,
                                    reason="Chromium not installed (make install installs it as root)")


@needs_chromium
def test_report_renders_in_headless_chromium(reported, tmp_path):
    _, page = reported
    counts, console, shot = _render(page, tmp_path)
    assert counts == {"images": 3, "broken": 0, "sections": 5}, counts
    assert console == [], console                        # no error or message of any kind
    ink = (shot < 200).any(axis=2).mean()                 # share of pixels that are not near-white
    colours = len(np.unique(shot.reshape(-1, 3)[::7], axis=0))
    assert ink > 0.03 and colours > 50, (ink, colours)


@needs_chromium
def test_the_rendering_check_catches_a_broken_page(tmp_path):
    """The same checks fail on a page with a missing image and a console error."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><h2>x</h2><img src="missing.png">'
                   '<script>console.error("boom")</script></body></html>')
    counts, console, shot = _render(bad, tmp_path, height=300)
    assert counts == {"images": 1, "broken": 1, "sections": 1}
    assert len(console) == 1 and '"boom"' in console[0]
    assert (shot < 200).any(axis=2).mean() < 0.03        # nearly blank
