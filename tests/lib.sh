# Shared helpers of the shell integration tests (tests/test_*.sh): a private work dir, bounded
# runs of legr-mpi (alone or under mpirun), exit-code and message checks, tiny job configs.
#
# Source it first thing:  source "$(dirname "$0")/lib.sh"
#
# Environment (set by tests/CMakeLists.txt): LEGR_BIN (the app), LEGR_SRC (the source tree),
# MPIEXEC (mpirun), PYTHON (/usr/bin/python3, which sees h5py), the OMPI_* root/oversubscribe
# variables and OPENBLAS_NUM_THREADS=1.
#
# Sanitizers: in the ASan/UBSan build the Makefile runs ctest with ASAN_OPTIONS=detect_leaks=1.
# Open MPI itself leaks (MPI_Init's allocations are never freed), so every run of legr-mpi made
# through legr_run / legr_mpirun gets ASAN_OPTIONS=detect_leaks=0:abort_on_error=1: leak checking
# off for the MPI program (the C unit tests still check leaks), and any real memory error aborts
# the run, which the tests see as a wrong exit code. Outside a sanitizer build the variable is
# ignored.
#
# Hangs: Debian's mpirun can hang in PMIx cleanup after a failing run (seen on Debian 12's Open MPI 4.1), so every
# mpirun runs under its own --timeout and under timeout(1) as a second fence.

set -euo pipefail

: "${LEGR_BIN:?LEGR_BIN must name the legr-mpi binary}"
: "${LEGR_SRC:?LEGR_SRC must name the source tree}"
: "${MPIEXEC:=mpirun}"
: "${PYTHON:=/usr/bin/python3}"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

LEGR_ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
# SANITIZED=1 when LEGR_BIN is the ASan/UBSan build, whose code runs 5 to 20 times slower: the
# heaviest tests then run a smaller case of the same code paths (each says what it leaves to the
# optimised build), which keeps the whole suite within CI's time.
#
# Pipes: never `producer | grep -q` under pipefail. grep -q exits at the first match, the
# producer may then die of SIGPIPE, and the pipeline reports failure although the text matched
# (this made tests take the wrong branch at random). Capture the text first: grep -q <<<"$(...)".
SANITIZED=0
case $(ldd "$LEGR_BIN" 2>/dev/null) in *libasan* | *libubsan*) SANITIZED=1 ;; esac
TEST_NAME=$(basename "$0" .sh)

# Each test owns one fresh directory, removed on exit (kept when LEGR_KEEP_TMP=1, for debugging).
T=$(mktemp -d "${TMPDIR:-/tmp}/${TEST_NAME}.XXXXXX")
cleanup_tmp() {
    local rc=$? p
    # A failed test may leave a background job behind: end it (by pid, only this test's).
    for p in $(job_pids); do kill -KILL "$p" 2>/dev/null || true; done
    if [[ -n "${LEGR_KEEP_TMP:-}" ]]; then echo "$TEST_NAME: kept $T" >&2; else rm -rf "$T"; fi
    return $rc
}
trap cleanup_tmp EXIT

fail() {
    echo "FAIL ($TEST_NAME): $*" >&2
    exit 1
}

note() { echo "$TEST_NAME: $*"; }

# legr_run TIMEOUT OUTPREFIX ARGS...: run legr-mpi as a singleton (world size 1) with a time
# limit; stdout and stderr go to OUTPREFIX.out / OUTPREFIX.err. Sets RC (never fails itself).
legr_run() {
    local limit=$1 prefix=$2
    shift 2
    RC=0
    ASAN_OPTIONS=$LEGR_ASAN_OPTIONS timeout -k 5 "$limit" "$LEGR_BIN" "$@" \
        >"$prefix.out" 2>"$prefix.err" || RC=$?
}

# legr_mpirun NP TIMEOUT OUTPREFIX ARGS...: the same under mpirun -np NP (oversubscribed, one
# BLAS thread per rank, and the options in the array MPIRUN_EXTRA if set). mpirun's --timeout
# ends the job with code 110 (not 0); timeout(1) is the backstop against a hung mpirun (code
# 124/137). Sets RC.
MPIRUN_EXTRA=()
legr_mpirun() {
    local np=$1 limit=$2 prefix=$3
    shift 3
    RC=0
    ASAN_OPTIONS=$LEGR_ASAN_OPTIONS timeout -k 5 $((limit + 10)) \
        "$MPIEXEC" --oversubscribe "${MPIRUN_EXTRA[@]}" --timeout "$limit" -np "$np" \
        -x ASAN_OPTIONS -x OPENBLAS_NUM_THREADS "$LEGR_BIN" "$@" \
        >"$prefix.out" 2>"$prefix.err" || RC=$?
}

# Show the tail of a run's output (on failure).
show_run() {
    local prefix=$1
    echo "---- $prefix.err (tail) ----" >&2
    tail -n 25 "$prefix.err" >&2 || true
}

# expect_rc WANT PREFIX WHAT: the last run exited with WANT.
expect_rc() {
    local want=$1 prefix=$2 what=$3
    if [[ "$RC" != "$want" ]]; then
        show_run "$prefix"
        fail "$what: exit code $RC, expected $want"
    fi
}

# expect_grep PATTERN FILE WHAT: FILE contains the fixed string PATTERN.
expect_grep() {
    local pat=$1 file=$2 what=$3
    if ! grep -qF -- "$pat" "$file"; then
        echo "---- $file ----" >&2
        tail -n 25 "$file" >&2 || true
        fail "$what: '$pat' not found in $(basename "$file")"
    fi
}

# write_cfg FILE NAME [EXTRA_GROUPS]: a tiny, fast job on 192 synthetic 8x8 RGB images with a
# ResNet-8 of width 0.5 (7 prunable convs), output under $T/runs/NAME. Groups not given in
# EXTRA_GROUPS keep these defaults; every group may be given once only, so tests that change
# run/data/model pass the whole group through the variables RUN_GROUP, DATA_GROUP, MODEL_GROUP.
write_cfg() {
    local file=$1 name=$2 extra=${3:-}
    local run="run: { name = \"$name\"; seed = 5; out_dir = \"$T/runs\"; log_every = 1; };"
    local data="data: { dataset = \"synthetic\"; synthetic_n = 192; synthetic_size = 8; val_fraction = 0.25; };"
    local model="model: { depth = 8; width = 0.5; };"
    {
        printf '%s\n' "${RUN_GROUP:-$run}" "${DATA_GROUP:-$data}" "${MODEL_GROUP:-$model}" "$extra"
    } >"$file"
}

# pretrain_base EPOCHS BATCH: pretrain the default small network (run "base"; search and family
# off) into $T/runs/base/base.h5, for tests that start from a trained base network.
pretrain_base() {
    write_cfg "$T/base.cfg" base "pretrain: { epochs = $1; batch = $2; };
search: { enabled = false; };
family: { enabled = false; };"
    legr_run 120 "$T/base" "$T/base.cfg"
    expect_rc 0 "$T/base" "pretraining the base"
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds; 1 on time-out.
wait_until() {
    local limit=$1
    shift
    local end=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

# h5_history FILE: one line per applied search result of a legr-checkpoint (id parent fitness
# alpha... kappa...), floats printed exactly (repr), for byte-wise comparison of histories.
h5_history() {
    "$PYTHON" - "$1" <<'EOF'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    h = f["search/history"]
    ids, par, fit = h["id"][()], h["parent"][()], h["fitness"][()]
    al, ka = h["alpha"][()], h["kappa"][()]
    for i in range(len(ids)):
        print(int(ids[i]), int(par[i]), repr(float(fit[i])),
              " ".join(repr(float(v)) for v in al[i]), "|",
              " ".join(repr(float(v)) for v in ka[i]))
EOF
}

# h5_history_len FILE: number of applied results in a checkpoint (0 if it cannot be read yet).
h5_history_len() {
    "$PYTHON" - "$1" 2>/dev/null <<'EOF' || echo 0
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    print(len(f["search/history/id"]))
EOF
}

# pids_of_rank RANK: the legr-mpi processes of this test (binary $LEGR_BIN, working on files in
# $T) whose environment says OMPI_COMM_WORLD_RANK=RANK.
pids_of_rank() {
    local want=$1 p
    for p in $(pgrep -f -- "$LEGR_BIN" || true); do
        [[ -r /proc/$p/environ ]] || continue
        # 2> first: a process that ends meanwhile makes the < redirection itself fail.
        grep -qF -- "$T" <<<"$(tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline")" || continue
        if grep -qx "OMPI_COMM_WORLD_RANK=$want" <<<"$(tr '\0' '\n' 2>/dev/null <"/proc/$p/environ")"; then
            echo "$p"
        fi
    done
}

# job_pids: every process of this test's runs (mpirun, timeout and the ranks): those whose
# command line mentions the test's directory $T.
job_pids() {
    local p
    for p in $(pgrep -f -- "$T/" || true); do
        [[ $p == "$$" || $p == "$BASHPID" ]] && continue
        echo "$p"
    done
}

# start_job PREFIX NP TIMEOUT ARGS...: legr_mpirun in the background, in its own session so that
# it can be signalled as a group; JOB_PID is its pid (and process group id).
start_job() {
    local prefix=$1 np=$2 limit=$3
    shift 3
    ASAN_OPTIONS=$LEGR_ASAN_OPTIONS setsid timeout -k 5 $((limit + 10)) \
        "$MPIEXEC" --oversubscribe --timeout "$limit" -np "$np" \
        -x ASAN_OPTIONS -x OPENBLAS_NUM_THREADS "${JOB_WRAPPER[@]}" "$LEGR_BIN" "$@" \
        >"$prefix.out" 2>"$prefix.err" &
    JOB_PID=$!
}
JOB_WRAPPER=()

# start_job_stopped PREFIX NP TIMEOUT ARGS...: start_job, but rank 0 stops itself (SIGSTOP) before
# it executes legr-mpi (a shell that execs it, so the pid stays), so the test finds it however
# fast the machine runs the job; freeze_at_first_checkpoint lets it run from there.
start_job_stopped() {
    local JOB_WRAPPER=(/bin/sh -c '[ "$OMPI_COMM_WORLD_RANK" != 0 ] || kill -STOP $$; exec "$@"' sh)
    start_job "$@"
}

# wait_job: wait for the background job; RC is its exit code.
wait_job() {
    RC=0
    { wait "$JOB_PID"; } 2>/dev/null || RC=$?
}

# kill_job_hard: SIGKILL the job's process group and every rank of it (Open MPI starts the
# ranks in process groups of their own, so killing mpirun's group alone would orphan them).
kill_job_hard() {
    local p
    kill -KILL -- "-$JOB_PID" 2>/dev/null || true
    for p in $(job_pids); do kill -KILL "$p" 2>/dev/null || true; done
    wait_job
    wait_until 10 no_job_left || fail "processes of the killed job survive: $(job_pids)"
}

no_job_left() { [[ -z "$(job_pids)" ]]; }

# nap SECONDS: sleep without forking a process (a read that times out on a silent pipe), so the
# pause stays short on a loaded machine.
exec {NAP_FD}<> <(:)
nap() { read -r -t "$1" -u "$NAP_FD" _ || true; }

# The integer root attribute ATTR of HDF5 file FILE, read with h5py (a second reader).
h5_int_attr() {
    "$PYTHON" -c "import h5py,sys; print(int(h5py.File(sys.argv[1])['/'].attrs[sys.argv[2]]))" "$1" "$2"
}

# is_stopped PID: the process is in the stopped state (T), per /proc.
is_stopped() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ ${stat##*) } == T* ]]
}

# freeze_at_first_checkpoint CHECKPOINT: for a job started by start_job_stopped, stop its rank 0
# (RANK0) at the first checkpoint whatever the machine's speed: rank 0, found stopped before it
# started, runs in slices of about 5 ms until the checkpoint file exists, and is left stopped. A
# search in Release runs a few candidates per slice, so it stops early in the search, while the
# test inspects and signals it.
freeze_at_first_checkpoint() {
    local ck=$1 end=$((SECONDS + 120))
    RANK0=
    until [[ -n $RANK0 ]] && is_stopped "$RANK0"; do
        ((SECONDS < end)) || fail "rank 0 did not start"
        # A job that ended before it was seen (not started by start_job_stopped?): say so at once.
        kill -0 "$JOB_PID" 2>/dev/null || fail "the job ended before its rank 0 was seen"
        RANK0=$(pids_of_rank 0)
    done
    until [[ -f $ck ]]; do
        ((SECONDS < end)) || fail "no checkpoint appeared"
        kill -CONT "$RANK0" 2>/dev/null || fail "rank 0 ended before its first checkpoint"
        nap 0.005
        kill -STOP "$RANK0" 2>/dev/null || fail "rank 0 ended before its first checkpoint"
    done
}

# signal_pending PID SIGNUM: the (stopped) process has signal SIGNUM pending, per /proc.
signal_pending() {
    local pid=$1 sig=$2 mask
    mask=$(awk '/^(ShdPnd|SigPnd):/ {print $2}' "/proc/$pid/status" 2>/dev/null | tr '\n' ' ')
    for m in $mask; do
        (((0x$m >> (sig - 1)) & 1)) && return 0
    done
    return 1
}
