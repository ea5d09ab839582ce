#!/usr/bin/env bash
# The Tinker-API test server (SkyRL 0.3.0, JAX on CPU) in its own virtualenv, .venv-skyrl.
#
# Never in .venv: skyrl pulls its own torch/transformers/jax, and the server only speaks
# tinker SDK <= 0.24.1 (newer SDKs send protobuf bodies it rejects), while the package's
# [tinker] extra allows newer SDKs. The tests (tests/test_tinker_server.py) start the server
# with tests/tinker_server/launch.py and skip, saying so, when this venv is missing.
#
# torch goes in first as the CPU build (as setup_env.sh does): skyrl's peft would otherwise
# pull a multi-GB CUDA torch. Idempotent: a venv that already imports skyrl is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${AIMO3_SKYRL_VENV:-.venv-skyrl}"
SKYRL_SPEC="${SKYRL_SPEC:-skyrl[tinker,jax]==0.3.0}"
CLIENT_VENV="${AIMO3_VENV:-.venv}"
t0=$(date +%s)
# the client side: the tinker SDK the server speaks, within the [tinker] extra's range
if [[ -x "$CLIENT_VENV/bin/python" ]]; then
  "$CLIENT_VENV/bin/python" -m pip install --disable-pip-version-check -q \
    "tinker==${TINKER_TEST_SDK:-0.24.1}" "chz>=0.3,<0.5" "python-dotenv>=1.0,<1.3"
  echo "[tinker-server] $CLIENT_VENV has tinker $("$CLIENT_VENV/bin/python" -c 'from importlib.metadata import version; print(version("tinker"))')"
fi
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import skyrl, jax, fastapi" >/dev/null 2>&1; then
  echo "[tinker-server] $VENV already has skyrl"
  exit 0
fi
echo "[tinker-server] creating $VENV with $SKYRL_SPEC"
python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}"
"${PIP[@]}" "$SKYRL_SPEC"
"$VENV/bin/python" "tests/tinker_server/launch.py" --check
echo "[tinker-server] ready in $(( $(date +%s) - t0 )) s: $("$VENV/bin/python" -c 'import skyrl, jax; from importlib.metadata import version as v; print("skyrl", v("skyrl"), "jax", v("jax"))')"
