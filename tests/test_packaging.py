"""The package as users install it: a built wheel, installed non-editable into a fresh virtual
environment, run from a folder outside the checkout (so nothing is imported from the source
tree); and the board path from a ``--no-deps`` install with onnxruntime and numpy only."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCH = ('{"ks":[3,5,7,3,3,5,7,3,3,5,7,3,3,5,7,3,3,5,7,3],"e":[3,4,6,3,3,4,6,3,3,4,6,3,3,4,6,3,'
        '3,4,6,3],"d":[2,3,4,2,3],"r":[160]}')


def _run(cmd, cwd, env=None, timeout=600):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, f"{cmd}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def _venv(path: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(path)], cwd=path.parent)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(out), str(ROOT)], cwd=out)
    (whl,) = out.glob("ofa_latency-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed non-editable; its dependencies are this
    environment's (a path entry after the venv's own site-packages, so the wheel's copy of
    ofa_latency wins and no editable finder is active)."""
    root = tmp_path_factory.mktemp("venv")
    py = _venv(root / "env")
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root).stdout.strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=root)
    work = root / "work"
    work.mkdir()
    return py, work


def test_wheel_holds_every_package_and_the_shipped_data(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    src = {str(p.relative_to(ROOT)) for p in (ROOT / "ofa_latency").rglob("*.py")}
    assert src <= names, sorted(src - names)
    manifest = json.loads((ROOT / "data" / "predictors" / "manifest.json").read_text())
    for e in manifest["predictors"]:
        for f in e["sha256"]:
            assert f"ofa_latency/data/predictors/{e['path']}/{f}" in names, (e["name"], f)
    assert "ofa_latency/data/hardware.csv" in names
    assert not any(n.startswith("ofa_latency/data/measurements") for n in names)
    # the optional runtimes install from the wheel: pip install 'ofa-latency[openvino]'
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    for extra, dist in (("openvino", "openvino"), ("openvino", "nncf"), ("litert", "litert-torch"),
                        ("litert", "ai-edge-litert"), ("litert", "ai-edge-quantizer"),
                        ("fleet", "ray")):
        assert f"Provides-Extra: {extra}" in text
        assert any(line.startswith(f"Requires-Dist: {dist}") and f'extra == "{extra}"' in line
                   for line in text.splitlines()), (extra, dist)


def test_installed_wheel_runs_the_readme_commands(installed):
    py, work = installed
    bin_ = py.parent
    where = _run([str(py), "-c", "import ofa_latency, ofa_latency.search; "
                  "print(ofa_latency.__file__)"], cwd=work).stdout
    assert str(py.parent.parent) in where, where  # the wheel's copy, not the checkout
    n_shipped = len(json.loads((ROOT / "data" / "predictors" / "manifest.json")
                               .read_text())["predictors"])
    out = _run([str(bin_ / "ofa-latency"), "list"], cwd=work).stdout
    assert f"{n_shipped} shipped predictors" in out
    out = _run([str(bin_ / "ofa-latency"), "predict", "--predictor", "help_v100_64_xgb",
                "--arch", ARCH], cwd=work).stdout
    assert float(out.split()[0]) > 0
    _run([str(bin_ / "ofa-latency"), "search", "--help"], cwd=work)
    out = _run([str(bin_ / "ofa-latency"), "search", "--estimator", "help_v100_64_xgb",
                "--latency-ms", "25", "--proxy", "macs", "--no-export", "--out", "s"],
               cwd=work).stdout
    assert "MACs proxy" in out and (work / "s" / "report.json").exists()
    out = _run([str(py), "-c", "from ofa_latency.conditioned import read_hardware; "
                "print(read_hardware('v100', 64).name)"], cwd=work).stdout  # the GPU spec table
    assert "V100" in out


def test_installed_wheel_runs_a_fleet(installed):
    """Ray's workers import the package too: from the wheel, not the checkout."""
    pytest.importorskip("ray", reason="the fleet extra")
    py, work = installed
    code = ("import ray; from ofa_latency import fleet, get_space\n"
            "ray.init(address='local', num_cpus=1, include_dashboard=False, "
            "namespace=fleet.NAMESPACE, log_to_driver=False, logging_level='ERROR')\n"
            "d = fleet.start_device('w0', 'wheel', backend='fake')\n"
            "print(d.info['versions']['ofa_latency'])\n"
            "out = fleet.profile_fleet(['wheel'], get_space('ofa_mbv3_w1.2').sample(2, seed=0), "
            "'t', progress=False)\n"
            "print(out['wheel']['measured'], ray.get(d.handle.info.remote())['done'])\n"
            "import ofa_latency.fleet._worker as w\n"
            "print(w.__file__)\n"
            "fleet.stop_devices(); ray.shutdown()")
    lines = _run([str(py), "-c", code], cwd=work, timeout=300).stdout.split("\n")
    assert lines[1].split() == ["2", "2"], lines
    assert str(py.parent.parent) in lines[2], lines


def test_board_from_a_no_deps_install_with_onnxruntime_and_numpy(wheel, tmp_path, mbv3,
                                                               smallest):
    from ofa_latency.cli import main

    archs = tmp_path / "a.txt"
    archs.write_text(json.dumps(smallest.to_dict()) + "\n")
    folder = tmp_path / "subnets"
    assert main(["export-set", "--archs", str(archs), "--out", str(folder), "--quiet"]) == 0
    py = _venv(tmp_path / "board")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel), "onnxruntime",
          "numpy"], cwd=tmp_path)
    listed = _run([str(py), "-m", "pip", "list", "--format", "json"], cwd=tmp_path).stdout
    assert {p["name"].lower() for p in json.loads(listed)} <= {
        "ofa-latency", "onnxruntime", "numpy", "pip", "setuptools", "wheel"}
    _run([str(py), "-m", "ofa_latency.board", "profile", str(folder), "--out", "board.csv",
          "--rounds", "2", "--max-rounds", "2", "--quiet"], cwd=tmp_path)
    _run([str(py.parent / "ofa-latency-board"), "--help"], cwd=tmp_path)
    from ofa_latency.datasets import read_measurements

    assert len(read_measurements(tmp_path / "board.csv")) == 1
