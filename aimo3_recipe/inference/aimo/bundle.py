"""An offline Kaggle bundle: the wheels the solver needs, a solver config, and a notebook.

Internet is off in the competition notebook, so everything it installs must come with it.
`build_bundle(BundleConfig(...))` writes a folder to upload as a Kaggle dataset:

    wheels/                 our package as a wheel, plus `requirements` downloaded for the
                            competition image (`pip download --only-binary=:all: --platform
                            ... --python-version ...`), for `pip install --no-index
                            --find-links wheels aimo3-recipe`
    model/                  the model folder (when `copy_model`; or upload it separately)
    solver.yaml             SolverConfig overrides; model_name_or_path -> the Kaggle path
    aimo3_submission.ipynb  installs offline, pre-reads the weights into the page cache in a
                            background thread, builds the solver lazily on the first
                            `predict` (the server must start within 15 minutes) and hands
                            `predict` to Kaggle's AIMO3InferenceServer (gateway.serve_kaggle)
    manifest.json           what was put in, with sizes

Limits, stated: the wheels cover what the image lacks and `requirements` names (vLLM and
its pins for a GPU image: a few GB to download, not done by the tests); the packages the
image already has (torch, transformers, ...) are not bundled. Our wheel is built from this
source checkout (a copy of pyproject.toml + aimo3_recipe/ in a temp dir, no build
isolation, so no network is needed for it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import Aimo3Error, ConfigError

REPO = Path(__file__).resolve().parents[3]  # the source checkout holding pyproject.toml


class BundleError(Aimo3Error, RuntimeError):
    """A bundle step failed (a wheel build or download); the message has pip's output."""


@dataclass
class BundleConfig:
    out_dir: str = "outputs/kaggle_bundle"  # the folder to upload as a Kaggle dataset
    model: str = "default"  # model folder to ship (or 'default', the embedded one)
    copy_model: bool = False  # copy the model into out_dir/model (else upload it yourself)
    kaggle_bundle_path: str = "/kaggle/input/aimo3-bundle"  # where Kaggle mounts this folder
    kaggle_model_path: str | None = None  # the model on Kaggle (None: <bundle>/model)
    requirements: str = "polars"  # comma-separated extra wheels to download (e.g. vllm==0.11.0)
    download: bool = True  # pip download `requirements` (needs the index; off: our wheel only)
    python_version: str = "3.11"  # the competition image's Python (major.minor)
    # its platform tags, comma-separated (Ubuntu 22.04, glibc 2.35, and the older manylinux
    # tags its pip accepts: pip download takes the list as given, it does not widen it)
    platform: str = ("manylinux_2_35_x86_64,manylinux_2_28_x86_64,manylinux_2_17_x86_64,"
                     "manylinux2014_x86_64")
    solver: str = ""  # SolverConfig overrides written to solver.yaml: "field=value,..."
    # the CSV of the notebook's local gateway (an interactive, not a rerun, session)
    problems_csv: str = "/kaggle/input/ai-mathematical-olympiad-progress-prize-3/test.csv"


def prefetch(path: str | Path, chunk_mb: int = 16) -> int:
    """Read every file under `path` once (into the OS page cache), returning the bytes read:
    the model's first load then reads from memory instead of the dataset disk."""
    total = 0
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        with f.open("rb") as fh:
            while block := fh.read(chunk_mb << 20):
                total += len(block)
    return total


def prefetch_in_background(path: str | Path) -> threading.Thread:
    t = threading.Thread(target=prefetch, args=(path,), daemon=True, name="prefetch")
    t.start()
    return t


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BundleError(f"{what} failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}"
                          f"\n{proc.stderr[-2000:]}")


def build_own_wheel(wheels: Path) -> Path:
    """Our package as a wheel, built from a copy of the source (the checkout stays clean)."""
    if not (REPO / "pyproject.toml").is_file():
        raise BundleError(f"no pyproject.toml at {REPO}: build the bundle from a source checkout")
    with tempfile.TemporaryDirectory(prefix="aimo3-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (REPO / name).is_file():
                shutil.copy(REPO / name, src / name)
        shutil.copytree(REPO / "aimo3_recipe", src / "aimo3_recipe",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        try:  # setuptools here: build offline; else pip fetches it (needs the index)
            import setuptools  # noqa: F401

            isolation = ["--no-build-isolation"]
        except ImportError:
            isolation = []
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
              "-q", "-w", str(wheels), str(src)], "building the aimo3-recipe wheel")
    found = sorted(wheels.glob("aimo3_recipe-*.whl"))
    if not found:
        raise BundleError(f"pip wheel wrote no aimo3_recipe wheel into {wheels}")
    return found[-1]


def download_wheels(requirements: list[str], wheels: Path, python_version: str,
                    platforms: list[str]) -> None:
    """Binary wheels of `requirements` and their dependencies for the target image."""
    if requirements:
        tags = [x for p in platforms for x in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels),
              "--only-binary=:all:", *tags, "--python-version", python_version,
              "--implementation", "cp", *requirements], "downloading wheels")


def _solver_overrides(spec: str, model_path: str) -> dict[str, Any]:
    from aimo3_recipe.config import from_dict
    from aimo3_recipe.inference.aimo.config import SolverConfig

    values: dict[str, Any] = {"model_name_or_path": model_path}
    for part in filter(None, (x.strip() for x in spec.split(","))):
        k, sep, v = part.partition("=")
        if not sep:
            raise ConfigError(f"BundleConfig.solver: {part!r} is not field=value")
        values[k.strip()] = v.strip()
    cfg = from_dict(SolverConfig, dict(values))  # validate now, not on Kaggle
    return {k: getattr(cfg, k) for k in values}  # typed values


NOTEBOOK_CODE = '''\
import subprocess, sys
BUNDLE = {bundle!r}
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                f"{{BUNDLE}}/wheels", "aimo3-recipe", *{extras!r}], check=True)

from aimo3_recipe.config import load_config
from aimo3_recipe.inference.aimo import AIMOSolver, SolverConfig
from aimo3_recipe.inference.aimo.bundle import prefetch_in_background
from aimo3_recipe.inference.aimo.gateway import serve_kaggle

CONFIG = load_config(SolverConfig, f"{{BUNDLE}}/solver.yaml")
prefetch_in_background(CONFIG.model_name_or_path)  # weights into the page cache meanwhile
_solver = None


def predict(id_, problem, *_other_columns):
    """Kaggle calls this once per problem (a reference CSV adds its answer column: ignored);
    the model loads on the first call."""
    global _solver
    if _solver is None:
        _solver = AIMOSolver(CONFIG)
    return _solver.predict(id_, problem)


serve_kaggle(predict, {csv!r})
'''


def notebook(bundle_path: str, extras: list[str], problems_csv: str) -> dict[str, Any]:
    """The submission notebook (nbformat 4) as a dict."""
    code = NOTEBOOK_CODE.format(bundle=bundle_path, extras=extras, csv=problems_csv)
    return {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": [
                "# AIMO3 submission (aimo3-recipe)\n",
                ("Offline install from the bundle dataset, lazy model load on the first "
                 "`predict`, Kaggle's inference server around it.")]},
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": code.splitlines(keepends=True)},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def build_bundle(config: BundleConfig) -> dict[str, Any]:
    """Write the bundle (module docstring); returns its manifest."""
    import yaml

    from aimo3_recipe.models import resolve_model_path

    out = Path(config.out_dir)
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    own = build_own_wheel(wheels)
    reqs = [r.strip() for r in config.requirements.split(",") if r.strip()]
    if config.download:
        download_wheels(reqs, wheels, config.python_version,
                        [p.strip() for p in config.platform.split(",") if p.strip()])
    model_src = Path(resolve_model_path(config.model))
    if config.copy_model:
        if not model_src.is_dir():
            raise ConfigError(f"copy_model needs a local model folder; got {config.model!r}")
        shutil.copytree(model_src, out / "model", dirs_exist_ok=True)
    model_path = config.kaggle_model_path or f"{config.kaggle_bundle_path}/model"
    overrides = _solver_overrides(config.solver, model_path)
    (out / "solver.yaml").write_text(yaml.safe_dump(overrides, sort_keys=True))
    extras = [r.split("=")[0].split("<")[0].split(">")[0].strip() for r in reqs]
    nb = notebook(config.kaggle_bundle_path, extras if config.download else [],
                  config.problems_csv)
    (out / "aimo3_submission.ipynb").write_text(json.dumps(nb, indent=1))
    files = sorted(p for p in out.rglob("*") if p.is_file())
    manifest = {"config": asdict(config), "own_wheel": own.name,
                "wheels": sorted(p.name for p in wheels.glob("*.whl")),
                "model_source": str(model_src), "kaggle_model_path": model_path,
                "bytes": sum(p.stat().st_size for p in files)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
