# Thin convenience layer over CMake: `make demo` runs the main job, `make test` the whole suite.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
NP ?= 2
CFG ?= configs/fmnist-quick.cfg
MPIRUN_ENV = OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
CTEST_ARGS ?= --output-on-failure -j2

.PHONY: all deps deps-demo deps-test build build-asan build-fuzz demo test test-release test-asan \
        test-fuzz test-narrow fuzz bench clean

all: build

# What each goal needs and no more: the build its libraries, the demo also Fashion-MNIST, the
# tests and the benchmark also Python with PyTorch (their oracle) and a single-node SLURM on
# localhost (tests/test_slurm.sh). Without dpkg the installer only says so.
deps:
	@bash tools/install-deps.sh build

deps-demo:
	@bash tools/install-deps.sh demo

deps-test:
	@bash tools/install-deps.sh test --slurm

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j2

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j2

# The libFuzzer targets of tests/fuzz (clang with ASan and UBSan).
build-fuzz: deps-test
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLEGR_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j2 --target fuzz_all

# The main job: the whole pipeline on Fashion-MNIST with NP ranks.
demo: deps-demo build
	$(MPIRUN_ENV) mpirun --oversubscribe -np $(NP) $(BUILD)/legr-mpi $(CFG)

# The suite twice: an optimised build, then AddressSanitizer + UndefinedBehaviorSanitizer; then
# 10 s of fuzzing per input reader (test-fuzz) and the kernel tests of 8- and 4-lane builds
# (test-narrow).
test: deps-test test-release test-asan test-fuzz test-narrow

test-release: build
	ctest --test-dir $(BUILD) $(CTEST_ARGS)

test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) $(CTEST_ARGS)

test-fuzz: build-fuzz
	ctest --test-dir $(FUZZ_BUILD) $(CTEST_ARGS)

# Each fuzz target for FUZZ_SECONDS (default 60); prints executions and coverage per target.
fuzz: build-fuzz
	LEGR_FUZZ_SECONDS=$(FUZZ_SECONDS) ctest --test-dir $(FUZZ_BUILD) $(CTEST_ARGS) -V \
	  | grep -E '^[0-9]+: fuzz_[a-z]+: |tests passed|FAILED'

# The kernel tests again with 8-lane vectors (AVX2, no AVX-512) and with 4-lane ones (SSE, no
# AVX), as on machines without AVX-512 or AVX: the vector kernels' lane masks and row tails
# depend on the width.
NARROW_BUILDS = build-avx2:-mno-avx512f build-sse:-mno-avx
NARROW_TESTS = test_conv test_conv_fast test_conv_group test_net_grad test_reference test_net_eval
test-narrow: deps
	set -e; for nb in $(NARROW_BUILDS); do dir=$${nb%%:*} flag=$${nb#*:}; \
	  cmake -S . -B $$dir -DCMAKE_BUILD_TYPE=None \
	    -DCMAKE_C_FLAGS="-O3 -march=native $$flag -DNDEBUG" >/dev/null; \
	  cmake --build $$dir -j2 --target $(NARROW_TESTS); \
	  ctest --test-dir $$dir $(CTEST_ARGS) -R "^($(subst $(eval) ,|,$(NARROW_TESTS)))$$"; \
	done

bench: deps-test build
	bash tools/bench

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(foreach nb,$(NARROW_BUILDS),$(firstword $(subst :, ,$(nb))))
