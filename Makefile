# mifg: the two commands a new user needs are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The CPU build of torch lies on disk on our machines; uv ignores pip's find-links, so name it.
TORCH := $(or $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl)),torch==2.13.0)
DEMO_N ?= 540
CONSUMERS ?= .venv-consumers
VERL ?= .venv-verl

.PHONY: setup lock browser demo test test-fast test-consumers consumers-env verl-env lock-verl test-verl lint format clean

setup: $(VENV)/.installed

# requirements.lock pins every dependency (`make lock` writes it); mifg itself goes in editable, no deps.
# Bytecode is compiled at install time: where PYTHONDONTWRITEBYTECODE is set (as on our machines) Python
# never writes it, and every `mifg` start would compile its imports again (8.1 s -> 4.1 s for generate's).
$(VENV)/.installed: pyproject.toml requirements.lock
	command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
	test -x $(PY) || uv venv -q -p python3 $(VENV)
	uv pip install -q -p $(PY) --compile-bytecode -r requirements.lock "$(TORCH)"
	uv pip install -q -p $(PY) --no-deps -e .
	$(PY) -m compileall -q -j 0 agents pipeline schemas rl annotation_ui >/dev/null
	touch $@

# Re-resolve the pins (after a dependency change in pyproject.toml) for CPython 3.11 on Linux x86-64.
# torch is resolved from the local CPU wheel (so no CUDA packages) and written as torch==2.13.0, which
# that wheel (2.13.0+cpu) satisfies; `make setup` installs the wheel by path.
lock:
	echo "torch==2.13.0" | uv pip compile -q pyproject.toml - --extra all --extra test \
		--find-links /opt/wheels --custom-compile-command "make lock" -o requirements.lock
	sed -i 's/^torch==2\.13\.0+cpu$$/torch==2.13.0/' requirements.lock

# Debian's chromium drives the browser tests (playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))
	@chromium --version

demo: setup
	$(BIN)/mifg generate --out runs/demo -n $(DEMO_N)
	$(BIN)/mifg stats runs/demo

test: setup browser
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow and not browser"

# The consumers' own CLIs (lmms-eval) in an environment of their own, pinned by requirements-consumers.lock;
# not part of `make test` (a heavy install): `make test-consumers` runs the tests marked `consumers`.
consumers-env: $(CONSUMERS)/.installed

$(CONSUMERS)/.installed: requirements-consumers.lock
	command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
	test -x $(CONSUMERS)/bin/python || uv venv -q -p python3 $(CONSUMERS)
	uv pip install -q -p $(CONSUMERS)/bin/python --compile-bytecode --no-deps -r requirements-consumers.lock "$(TORCH)"
	touch $@

test-consumers: setup consumers-env
	MIFG_CONSUMERS_PYTHON=$(abspath $(CONSUMERS))/bin/python $(BIN)/pytest -q -m consumers -rs

# verl (the scale-out RL engine, `mifg train --engine verl`) in an environment of its own: it pins
# its own transformers and brings ray. requirements-verl.lock pins it with CPU torch (`make lock-verl`
# writes it); mifg goes in editable, no deps, for rl/'s agent loop (rl/verl_agent_loop.py).
# `make test-verl` runs the tests marked `verl`; `make test` skips them without this environment.
VERL_REQS := verl[verl-core]==0.9.1\ntorch==2.13.0\npydantic>=2.7,<3\npyarrow>=15\npillow>=10.3\nnumpy>=1.26\npyyaml>=6\n

verl-env: $(VERL)/.installed

$(VERL)/.installed: requirements-verl.lock pyproject.toml
	command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
	test -x $(VERL)/bin/python || uv venv -q -p python3 $(VERL)
	uv pip install -q -p $(VERL)/bin/python --compile-bytecode -r requirements-verl.lock "$(TORCH)"
	uv pip install -q -p $(VERL)/bin/python --no-deps -e .
	touch $@

lock-verl:
	printf '$(VERL_REQS)' | uv pip compile -q - --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--find-links /opt/wheels --custom-compile-command "make lock-verl" -o requirements-verl.lock
	sed -i 's/^torch==2\.13\.0+cpu$$/torch==2.13.0/' requirements-verl.lock

test-verl: setup verl-env
	MIFG_VERL_PYTHON=$(abspath $(VERL))/bin/python $(BIN)/pytest -q -m verl -rs

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf runs .pytest_cache .ruff_cache
