"""Builds that can be trusted on disk (issue 30, item 6). manifest.json records the sha256
of every other file of the build and of its own content (build._write_manifest); build.load
checks them (build._read_manifest) before anything reads the build, so every command
(run, energy, report, inspect), every backend (emulator on torch, Lava, norse, XyloSim)
and the Python API refuse a damaged or edited build in one line naming the file; the CLI
exits 1 and writes nothing. Files the commands add later (run-*.json, spikes-*.npz,
energy*, report.html) are outputs, outside the digested set. Was: one flipped bit in
manifest.json (a vth_mant or v_decay digit) or in model.net's weights ran with exit 0."""
import json
import pathlib
import shutil
import tempfile

import h5py
import numpy as np
import pytest

import ahsar_deploy as ad
from ahsar_deploy import api, build, checkpoint, report
from ahsar_deploy.errors import BuildError

LOIHI_FILES = ["calibration.json", "calibration.md", "manifest.json", "model.net", "model.nir", "source.npz"]
XYLO_FILES = ["calibration.json", "manifest.json", "source.npz", "xylo_spec.npz"]
BACKENDS = {"loihi": ("emulator", "lava", "norse"), "xylo": ("emulator", "xylosim")}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, sdigits8, make_ckpt):
    """{"loihi": a 64-16-10 build on digits, "xylo": an 8-16-8 xylo-audio2 build on
    sdigits classes 0..7}, both of untrained checkpoints (fast)."""
    d = tmp_path_factory.mktemp("digest")
    out = {}
    for flow, sizes, target, data in (("loihi", [64, 16, 10], "loihi", None),
                                      ("xylo", [8, 16, 8], "xylo-audio2", str(sdigits8))):
        checkpoint.save(make_ckpt(sizes, steps=8, weight_scale=3.0), d / f"{flow}.pt")
        m = build.export(d / f"{flow}.pt", target, d / flow, calib_samples=16, progress=False, qat="off",
                         refit=False, dataset=data)
        assert json.loads((d / flow / "manifest.json").read_text()) == m   # what export returns is on disk
        out[flow] = d / flow
    return out


def _copy(src, tmp_path, name="b"):
    shutil.copytree(src, tmp_path / name)
    return tmp_path / name


def _flip(path, offset, bit=0):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 1 << bit
    path.write_bytes(bytes(raw))


def _digit_offset(text: str, key: str) -> int:
    """Offset of the first digit of the first `"key": N` of a manifest."""
    return text.index(f'"{key}": ') + len(f'"{key}": ')


def test_both_manifests_record_every_file(builds):
    for flow, files in (("loihi", LOIHI_FILES), ("xylo", XYLO_FILES)):
        b = builds[flow]
        m = json.loads((b / "manifest.json").read_text())
        assert sorted(p.name for p in b.iterdir()) == files == sorted(m["files"])
        assert m["version"] == build.BUILD_VERSION == 2
        assert m["file_sha256"] == {n: checkpoint.sha256(b / n) for n in files if n != "manifest.json"}
        assert m["manifest_sha256"] == build._manifest_digest(m)


def test_the_issue_cases_are_refused(builds, tmp_path, cli, error_line):
    """vth_mant 677 -> 777 and v_decay 512 -> 412 (one bit each) in manifest.json, and one
    bit of a weight in model.net (-44 -> -40 kind): each still parses as a network (the old
    code ran it, exit 0); now the CLI exits 1 naming the file."""
    text = (builds["loihi"] / "manifest.json").read_text()
    cases = []
    for key in ("vth_mant", "v_decay"):
        b = _copy(builds["loihi"], tmp_path, key)
        at = _digit_offset(text, key)
        _flip(b / "manifest.json", at)
        old, new = json.loads(text)["layers"][0][key], json.loads((b / "manifest.json").read_text())["layers"][0][key]
        assert new != old and abs(new - old) == 10 ** (len(str(old)) - 1), (old, new)   # one digit changed
        cases.append((b, "manifest.json"))
    b = _copy(builds["loihi"], tmp_path, "weight")
    with h5py.File(b / "model.net", "r") as f:
        d = f["layer/0/weight"]
        w, base = d[()], d.id.get_offset()   # contiguous float32 little-endian
    i = int(np.flatnonzero((np.abs(w) >= 32) & (np.abs(w) < 64))[0])   # exponent 5: mantissa bit 20 = 4
    _flip(b / "model.net", base + 4 * i + 2, 4)
    with h5py.File(b / "model.net", "r") as f:
        changed = f["layer/0/weight"][()]
    assert np.count_nonzero(changed != w) == 1 and abs(changed.flat[i] - w.flat[i]) == 4   # a plausible weight
    cases.append((b, "model.net"))
    for b, name in cases:
        line = error_line(cli("run", b, "--backend", "emulator", "--samples", "20", "-q"))
        assert f"{b / name}: damaged or edited since the export" in line and "export the build again" in line
        assert sorted(p.name for p in b.iterdir()) == LOIHI_FILES   # nothing written


def _api_readers(flow):
    readers = [("build.load", build.load), ("api.inspect", ad.inspect),
               ("api.inputs", lambda b: api.inputs(b, samples=3)),
               ("api.energy", lambda b: ad.energy(b, samples=3)), ("report.write", report.write)]
    return readers + [(f"api.run {k}", lambda b, k=k: ad.run(b, samples=3, backend=k)) for k in BACKENDS[flow]]


def _cli_commands(flow):
    return ([("run", "--backend", k, "--samples", "3") for k in BACKENDS[flow]]
            + [("energy", "--samples", "3"), ("report",), ("inspect",)])


@pytest.mark.parametrize("flow", ["loihi", "xylo"])
def test_one_flipped_bit_in_any_file_is_refused_by_every_reader(builds, flow, tmp_path, cli_inproc):
    """Each file of a build, one bit flipped (in manifest.json a digit of vth_mant, so the
    JSON stays valid): every API reader raises BuildError naming the file, every command
    exits 1 with one line naming it, every backend (Lava, norse, XyloSim, the emulator)
    included, and nothing is written into the build."""
    files = LOIHI_FILES if flow == "loihi" else XYLO_FILES
    for name in files:
        b = _copy(builds[flow], tmp_path, name)
        p = b / name
        _flip(p, _digit_offset(p.read_text(), "vth_mant") if name == "manifest.json" else p.stat().st_size // 2)
        want = f"{p}: damaged or edited since the export"
        for what, read in _api_readers(flow):
            with pytest.raises(BuildError) as e:
                read(b)
            assert want in str(e.value) and "\n" not in str(e.value), (what, str(e.value))
        for args in _cli_commands(flow):
            code, out, err = cli_inproc(args[0], b, *args[1:], "-q")
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert code == 1 and out == "" and len(lines) == 1, (args, err)
            assert lines[0].startswith(f"ahsar {args[0]}: error: {want}") and "export the build again" in lines[0]
        assert sorted(q.name for q in b.iterdir()) == files, name   # no output written


def test_every_bit_of_the_manifest(builds, tmp_path):
    """Every one of the manifest's bits flipped, one at a time: refused naming manifest.json,
    unless the flipped text says exactly what the manifest said (a float's last digit that
    reads back as the same double, an exponent's e as E).
    In memory (/dev/shm) where there is one: 16k writes and reads take 1 s there, 40 s on disk."""
    shm = pathlib.Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path) as d:
        _every_bit(_copy(builds["loihi"], pathlib.Path(d)))


def _every_bit(b):
    p = b / "manifest.json"
    raw = p.read_bytes()
    content = json.loads(raw)
    same = 0
    for offset in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[offset] ^= 1 << bit
            p.write_bytes(bytes(flipped))
            try:
                build.load(b)
            except BuildError as e:
                assert str(e).startswith(f"{p}: damaged"), (offset, bit, str(e))
            else:
                assert json.loads(bytes(flipped)) == content, (offset, bit)
                same += 1
    assert same < 10, same   # found 1: a float's 17th digit changed, and the same double read back


def test_model_net_flips_spread_over_the_file(builds, tmp_path):
    """17 one-bit flips spread over model.net (the issue tried 17): each refused."""
    b = _copy(builds["loihi"], tmp_path)
    p = b / "model.net"
    raw = p.read_bytes()
    for k, offset in enumerate(np.linspace(0, len(raw) - 1, 17).astype(int)):
        _flip(p, int(offset), k % 8)
        with pytest.raises(BuildError, match="model.net: damaged or edited since the export"):
            build.load(b)
        p.write_bytes(raw)
    build.load(b)


def test_missing_file_older_and_other_versions(builds, tmp_path, reseal):
    b = _copy(builds["loihi"], tmp_path)
    (b / "model.nir").unlink()
    with pytest.raises(BuildError, match=r"model.nir: missing \(manifest.json records it\); export the build"):
        ad.run(b, samples=3)
    b = _copy(builds["loihi"], tmp_path, "v1")   # as version 1 wrote it: no digests
    m = json.loads((b / "manifest.json").read_text())
    for k in ("file_sha256", "manifest_sha256"):
        del m[k]
    (b / "manifest.json").write_text(json.dumps(dict(m, version=1), indent=2))
    with pytest.raises(BuildError, match="a build of version 1, written before builds recorded the sha256 "
                                         "of their files; export the build again"):
        build.load(b)
    m["version"] = 3
    (b / "manifest.json").write_text(json.dumps(dict(m, file_sha256={}), indent=2))
    reseal(b)
    with pytest.raises(BuildError, match="build version 3; this ahsar-deploy reads version 2"):
        build.load(b)
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(BuildError, match=r"manifest.json: damaged \(JSONDecodeError"):
        ad.inspect(b)


def test_outputs_written_after_export_keep_the_build_readable(builds, tmp_path, cli_inproc, sdigits8):
    """run, energy and report add their files to the build; every command reads it after,
    and energy reuses run's spike cache (which has its own key, runs.py)."""
    for flow in ("loihi", "xylo"):
        b = _copy(builds[flow], tmp_path, flow)
        data = ("--samples", "4") + (("--data", sdigits8) if flow == "xylo" else ())
        for args in (("run", "--backend", "emulator", *data), ("energy", "--backend", "emulator", *data),
                     ("report",), ("inspect",), ("run", "--backend", BACKENDS[flow][-1], *data)):
            code, _, err = cli_inproc(args[0], b, *args[1:], "-q")
            assert code == 0, (flow, args, err)
            if args[0] == "energy":
                assert "4 from spikes-emulator.npz, 0 run" in err, err
        added = {p.name for p in b.iterdir()} - set(LOIHI_FILES if flow == "loihi" else XYLO_FILES)
        assert {"run-emulator.json", "spikes-emulator.npz", "energy.json", "report.html"} <= added, added
        build.load(b)


def test_an_unlisted_file_in_a_build_is_a_bug_and_nothing_is_written(builds, tmp_path, monkeypatch):
    """Every file the export writes must be listed (and so digested): a writer that adds
    one is stopped at export, and no build directory is left."""
    real = build.write_source

    def also_extra(graph, path):
        real(graph, path)
        (path.parent / "extra.bin").write_bytes(b"x")
    monkeypatch.setattr(build, "write_source", also_extra)
    src = builds["loihi"].parent / "loihi.pt"
    with pytest.raises(RuntimeError, match=r"build files .*extra.bin.* are not the manifest's"):
        build.export(src, "loihi", tmp_path / "out", calib_samples=16, progress=False, qat="off", refit=False)
    assert list(tmp_path.iterdir()) == []
