"""The offline Kaggle bundle: built here, installed into a new virtual environment with no
network at all (`unshare -n`, so no index is reachable), then the solver imported from the
installed wheel runs `predict` on one problem with the embedded default.

Stand-in for the competition image: the new environment sees this environment's
site-packages (torch, transformers, ...) through a .pth line, as the Kaggle image has them
preinstalled; what the bundle brings (our wheel, and in the slow test a downloaded wheel
with its dependency) is installed from the bundle alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from aimo3_recipe.config import load_config
from aimo3_recipe.inference.aimo import SolverConfig
from aimo3_recipe.inference.aimo.bundle import BundleConfig, build_bundle, prefetch

SOLVER = ("use_vllm=false,num_attempts=2,max_tokens=24,max_tool_calls=1,sandbox_sessions=1,"
          "total_s=600,min_s=1,reserve_s=0,num_problems=1,temperature=0.7")


def _no_network() -> list[str]:
    """A command prefix that runs in an empty network namespace (no index reachable)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"],
                                                  check=False).returncode == 0:
        return ["unshare", "-n"]
    pytest.skip("cannot make a network namespace here (unshare -n); the offline claim "
                "would be untested")


def _venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # the competition image's preinstalled packages: this environment's, appended last
    (site / "zz_image_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _pip_offline(venv: Path, bundle: Path, *args: str) -> None:
    proc = subprocess.run([*_no_network(), str(venv / "bin" / "python"), "-m", "pip", "install",
                           "-q", "--no-index", "--find-links", str(bundle / "wheels"), *args],
                          cwd=bundle.parent, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


PREDICT = """
import importlib.metadata as md, json, sys, sysconfig
import aimo3_recipe
from packaging.requirements import Requirement
site = sysconfig.get_paths()["purelib"]
assert aimo3_recipe.__file__.startswith(site), aimo3_recipe.__file__  # from the wheel
dist = next(md.distributions(name="aimo3-recipe", path=[site]))
missing = [r for r in map(Requirement, dist.requires or []) if not r.marker
           and md.version(r.name) not in r.specifier]
assert not missing, missing
from aimo3_recipe.config import load_config
from aimo3_recipe.inference.aimo import AIMOSolver, SolverConfig
solver = AIMOSolver(load_config(SolverConfig, sys.argv[1]))
frame = solver.predict("t1", "What is 2 + 3?")
rec = solver.records[0]
print(json.dumps({"rows": frame.to_dict("records"), "attempts": len(rec.attempts),
                  "file": aimo3_recipe.__file__}))
"""


@pytest.mark.slow  # a venv, an install and a model load: ~45 s on 2 busy cores
def test_bundle_installs_offline_and_predicts(tmp_path, embedded_model_dir):
    bundle = tmp_path / "bundle"
    manifest = build_bundle(BundleConfig(
        out_dir=str(bundle), download=False, kaggle_bundle_path=str(bundle),
        kaggle_model_path=str(embedded_model_dir), solver=SOLVER))
    assert manifest["own_wheel"].startswith("aimo3_recipe-") and manifest["bytes"] > 0
    cfg = load_config(SolverConfig, bundle / "solver.yaml")
    assert cfg.model_name_or_path == str(embedded_model_dir) and cfg.num_attempts == 2
    nb = json.loads((bundle / "aimo3_submission.ipynb").read_text())
    code = "".join(nb["cells"][1]["source"])
    assert "--no-index" in code and "prefetch_in_background" in code and "serve_kaggle" in code
    assert "if _solver is None" in code  # the model loads on the first predict
    compile(code, "notebook", "exec")
    venv = _venv(tmp_path)
    # --ignore-installed: the image stand-in shows this checkout's editable install
    _pip_offline(venv, bundle, "--no-deps", "--ignore-installed", "aimo3-recipe")
    proc = subprocess.run([*_no_network(), str(venv / "bin" / "python"), "-c", PREDICT,
                           str(bundle / "solver.yaml")], cwd=tmp_path,  # not the checkout
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"][0]["id"] == "t1" and 0 <= out["rows"][0]["answer"] <= 99999
    assert out["attempts"] == 2 and str(venv) in out["file"]


@pytest.mark.slow
def test_bundle_downloads_wheels_that_install_offline(tmp_path):
    """`pip download` for a target Python/platform (here this machine's, so they install
    here): polars and its runtime wheel, resolved offline from the bundle alone."""
    bundle = tmp_path / "bundle"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        manifest = build_bundle(BundleConfig(out_dir=str(bundle), requirements="polars",
                                             python_version=ver))
    except RuntimeError as e:
        if "downloading wheels" in str(e):
            pytest.skip(f"the package index is not reachable: {str(e)[:200]}")
        raise
    assert any(w.startswith("polars") for w in manifest["wheels"])
    venv = _venv(tmp_path)
    (next((venv / "lib").glob("python*/site-packages")) / "zz_image_packages.pth").unlink()
    _pip_offline(venv, bundle, "polars")
    proc = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import polars; print(polars.Series('id', ['a']).item(0))"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "a", proc.stderr


def test_prefetch_reads_every_file(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 24)
    assert prefetch(tmp_path) == 1024 and prefetch(tmp_path / "a") == 1000
