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
        test-fuzz fuzz bench clean

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

# The suite twice: an optimised build (whose kernel tests also run through every vector ISA
# variant this CPU supports), then AddressSanitizer + UndefinedBehaviorSanitizer; then 10 s of
# fuzzing per input reader (test-fuzz).
test: deps-test test-release test-asan test-fuzz

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

bench: deps-test build
	bash tools/bench

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
