# The two commands at the top of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aimo3-installed

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml setup_env.sh
	AIMO3_VENV=$(VENV) ./setup_env.sh
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m aimo3_recipe.demo

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not vllm"

clean:
	rm -rf $(VENV) outputs .pytest_cache
