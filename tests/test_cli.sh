# The command line: --help, --version, usage and config errors (exit 2 with file:line and key),
# and a --dry-run of ResNet-56 on CIFAR-10 that reads no dataset and prints the exact counts.
source "$(dirname "$0")/lib.sh"

# --help: exit 0, documents --resume and the exit codes.
legr_run 20 "$T/help" --help
expect_rc 0 "$T/help" "--help"
expect_grep "--resume" "$T/help.out" "--help mentions --resume"
expect_grep "--dry-run" "$T/help.out" "--help mentions --dry-run"
expect_grep "exit codes" "$T/help.out" "--help lists the exit codes"
for code in "0 success" "2 usage" "3 input data" "4 stopped"; do
    expect_grep "$code" "$T/help.out" "--help explains exit code '$code'"
done

# --version: exit 0, the program and a version number, then the kernels' ISA. LEGR_ISA picks
# another variant the CPU runs (sse always), and refuses an unknown name (exit 2).
legr_run 20 "$T/version" --version
expect_rc 0 "$T/version" "--version"
grep -Eq '^legr-mpi [0-9]+\.[0-9]+' "$T/version.out" || fail "--version printed: $(cat "$T/version.out")"
grep -Eq '^kernels: (avx512|avx2|sse|native-[0-9]+-lane) ' "$T/version.out" ||
    fail "--version names no kernel ISA: $(cat "$T/version.out")"
if ! grep -q '^kernels: native' "$T/version.out"; then
    LEGR_ISA=sse legr_run 20 "$T/sse" --version
    expect_rc 0 "$T/sse" "LEGR_ISA=sse"
    expect_grep "kernels: sse (this CPU runs: " "$T/sse.out" "LEGR_ISA=sse is used"
    LEGR_ISA=neon legr_run 20 "$T/neon" --version
    expect_rc 2 "$T/neon" "LEGR_ISA=neon"
    expect_grep "LEGR_ISA=neon: unknown (avx512, avx2 or sse" "$T/neon.err" "LEGR_ISA=neon: message"
fi

# Usage errors: exit 2, and nothing started (no run directory appears).
legr_run 20 "$T/unknown_opt" --frobnicate x.cfg
expect_rc 2 "$T/unknown_opt" "unknown option"
expect_grep "--frobnicate" "$T/unknown_opt.err" "unknown option is named"

legr_run 20 "$T/no_cfg"
expect_rc 2 "$T/no_cfg" "no config file"
expect_grep "usage" "$T/no_cfg.err" "no config prints the usage"

legr_run 20 "$T/resume_no_arg" --resume
expect_rc 2 "$T/resume_no_arg" "--resume without a file"

legr_run 20 "$T/missing" "$T/does-not-exist.cfg"
expect_rc 2 "$T/missing" "missing config file"
expect_grep "$T/does-not-exist.cfg" "$T/missing.err" "the missing path is named"

# An unknown key on line 4: file:line and the full key name.
write_cfg "$T/unknown_key.cfg" unknown_key 'pretrain: { epoch = 3; };'
legr_run 20 "$T/unknown_key" "$T/unknown_key.cfg"
expect_rc 2 "$T/unknown_key" "unknown config key"
expect_grep "unknown_key.cfg:4" "$T/unknown_key.err" "unknown key: file:line"
expect_grep "pretrain.epoch" "$T/unknown_key.err" "unknown key: key named"

# A value out of range (line 4) and a wrong type.
write_cfg "$T/range.cfg" range 'search: { target_flops = 1.5; };'
legr_run 20 "$T/range" "$T/range.cfg"
expect_rc 2 "$T/range" "target_flops out of range"
expect_grep "range.cfg:4" "$T/range.err" "out of range: file:line"
expect_grep "search.target_flops" "$T/range.err" "out of range: key named"

write_cfg "$T/type.cfg" type 'pretrain: { batch = 2.5; };'
legr_run 20 "$T/type" "$T/type.cfg"
expect_rc 2 "$T/type" "float for an integer key"
expect_grep "pretrain.batch" "$T/type.err" "wrong type: key named"

# Integers beyond 32 bits are refused as written (libconfig alone would wrap them silently:
# 99999999999 became seed 1215752191, 4294967299 epochs became 3).
for kv in "run:seed:99999999999" "run:seed:2147483648" "pretrain:epochs:4294967299" \
          "model:depth:4294967304" "pretrain:batch:-99999999999"; do
    IFS=: read -r grp key val <<<"$kv"
    printf '%s: { %s = %s; };\n' "$grp" "$key" "$val" >"$T/wide.cfg"
    legr_run 20 "$T/wide" --dry-run "$T/wide.cfg"
    expect_rc 2 "$T/wide" "$grp.$key = $val"
    expect_grep "$grp.$key = $val is out of range" "$T/wide.err" "$grp.$key = $val as written"
done

# A directory as the config or @include'd: a message and exit 2 (libconfig's scanner would end
# the process with "input in flex scanner failed" and no error line of ours).
mkdir -p "$T/adir"
legr_run 20 "$T/dir" "$T/adir"
expect_rc 2 "$T/dir" "a directory as the config"
expect_grep "legr-mpi: error: $T/adir: is a directory, not a config file" "$T/dir.err" "directory"
printf '@include "adir"\n' >"$T/incdir.cfg"
legr_run 20 "$T/incdir" "$T/incdir.cfg"
expect_rc 2 "$T/incdir" "an @include'd directory"
expect_grep "incdir.cfg:1: $T/adir: is a directory" "$T/incdir.err" "@include'd directory"
# An unknown key in an included file is reported at that file and line (names relative to the
# including config's directory).
write_cfg "$T/part.cfg" part 'pretrain: { epoch = 3; };'
printf '@include "part.cfg"\n' >"$T/main.cfg"
legr_run 20 "$T/inckey" --dry-run "$T/main.cfg"
expect_rc 2 "$T/inckey" "unknown key in an included file"
expect_grep "part.cfg:4: unknown key 'pretrain.epoch'" "$T/inckey.err" "the included file named"
# A string with a newline is echoed escaped: the error stays on one line.
printf 'data: { dataset = "fashion\\nmnist"; };\n' >"$T/nl.cfg"
legr_run 20 "$T/nl" --dry-run "$T/nl.cfg"
expect_rc 2 "$T/nl" "a newline in a string"
expect_grep 'data.dataset = "fashion\nmnist" is not one of' "$T/nl.err" "escaped newline"
[[ $(grep -c . "$T/nl.err") -eq 1 ]] || fail "the newline error spans $(grep -c . "$T/nl.err") lines"

# The same config error under mpirun -np 2: every rank stops with code 2, mpirun reports it.
legr_mpirun 2 60 "$T/range_np2" "$T/range.cfg"
expect_rc 2 "$T/range_np2" "config error under mpirun -np 2"
expect_grep "search.target_flops" "$T/range_np2.err" "np 2 config error message"
test ! -e "$T/runs" || fail "a failed config created the run directory"

# run.threads beyond the CPUs a rank may use: mpirun binds a lone rank to one core by default,
# and the run says so and uses one thread; unbound (with two CPUs or more) it is silent.
cat >"$T/thr.cfg" <<EOF
run: { name = "thr"; out_dir = "$T/thr-out"; threads = 2; };
data: { dataset = "synthetic"; };
model: { depth = 8; };
EOF
MPIRUN_EXTRA=(--bind-to core)
legr_mpirun 1 60 "$T/thr_bound" --dry-run "$T/thr.cfg"
expect_rc 0 "$T/thr_bound" "--dry-run bound to one core"
expect_grep "2 threads per rank asked (run.threads), but rank 0 may run on 1 CPU(s) only" \
    "$T/thr_bound.err" "threads beyond the affinity mask are reported"
expect_grep "--bind-to none" "$T/thr_bound.err" "the report names the mpirun option"
if (($(nproc) >= 2)); then
    MPIRUN_EXTRA=(--bind-to none)
    legr_mpirun 1 60 "$T/thr_free" --dry-run "$T/thr.cfg"
    expect_rc 0 "$T/thr_free" "--dry-run unbound"
    if grep -q "threads per rank asked" "$T/thr_free.err"; then
        fail "an unbound rank with $(nproc) CPUs reported too few CPUs"
    fi
fi
# More threads than the engine's kernels use (4 per rank): said, with the way to use the cores.
sed -i 's/threads = 2;/threads = 8;/' "$T/thr.cfg"
legr_mpirun 1 60 "$T/thr_many" --dry-run "$T/thr.cfg"
expect_rc 0 "$T/thr_many" "--dry-run with run.threads = 8"
expect_grep "8 threads per rank asked (run.threads), but the engine runs at most 4 per rank; using 4" \
    "$T/thr_many.err" "threads beyond the engine's most are reported"
! grep -q "^legr-mpi: 4 threads per rank asked" "$T/thr_many.err" ||
    fail "the CPU message misstates the threads asked: $(cat "$T/thr_many.err")"
MPIRUN_EXTRA=()

# --dry-run of ResNet-56 on CIFAR-10 whose data directory does not exist: the dry run reads no
# data (so it succeeds) and creates no output directory.
cat >"$T/r56.cfg" <<EOF
run: { name = "r56"; out_dir = "$T/r56-out"; };
data: { dataset = "cifar10"; dir = "$T/no/such/cifar-dir"; };
model: { depth = 56; };
search: { target_flops = 0.5; };
family: { flops = [0.7, 0.3]; };
EOF
legr_run 120 "$T/dry" --dry-run "$T/r56.cfg"
expect_rc 0 "$T/dry" "--dry-run of ResNet-56"
test ! -e "$T/r56-out" || fail "--dry-run created the output directory"
expect_grep "depth = 56;" "$T/dry.out" "dry run prints the resolved config"
# Layer by layer: the stem, a stage-3 block, the classifier (names as in PyTorch).
for layer in conv1 layer1.0.conv1 layer3.8.conv2 fc; do
    grep -Eq "(^|[[:space:]])$layer[[:space:]]" "$T/dry.out" || fail "dry run lacks layer $layer"
done
# ResNet-56, 3x32x32, 10 classes: 125,485,696 MACs and 853,018 parameters (docs/ALGORITHM.md section 5).
expect_grep "FLOPs (multiply-accumulates of conv + fc): 125485696" "$T/dry.out" "ResNet-56 FLOPs"
expect_grep "parameters: 853018" "$T/dry.out" "ResNet-56 parameters"
# Prune groups: 27 single-conv groups plus the residual group of 28 convs; 1072 ranked filters.
expect_grep "28 groups of 55 convs, 1072 ranking entries" "$T/dry.out" "prune group summary"
grep -Eq 'group +0: +64 entries, 28 convs' "$T/dry.out" || fail "the residual group of 28 convs"
[[ $(grep -Ec 'group +[0-9]+: +[0-9]+ entries, +1 conv ' "$T/dry.out") == 27 ]] ||
    fail "expected 27 single-conv groups"
expect_grep "work estimate" "$T/dry.out" "dry run prints a work estimate"

note "ok"
