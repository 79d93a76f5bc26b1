# Checkpoint and resume of a deterministic search: after SIGKILL and after SIGTERM to rank 0,
# `--resume search.h5 job.cfg` ends with exactly the history of an uninterrupted run (with other
# rank counts, too); SIGUSR1 through mpirun to a one-rank search stops it resumably (exit 4);
# corrupt checkpoints, checkpoints of another config and altered checkpoints are refused with
# exit code 3.
#
# To interrupt a search at a known point whatever the machine's speed, the test SIGSTOPs rank 0
# as soon as the first checkpoint appears (freeze_at_first_checkpoint), then signals it.
source "$(dirname "$0")/lib.sh"

EVALS=48
pretrain_base 1 16

# checkpoint_every (7) is not a multiple of sync_batch (4) on purpose: checkpoints then fall
# inside a batch of the deterministic mode.
search_cfg() {
    local name=$1 tau=${2:-2}
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/$name.cfg" "$name" "search: { population = 6; sample = 3; evaluations = $EVALS;
  mutate_fraction = 0.3; tau = $tau; batch = 8; val_limit = 16; mode = \"deterministic\";
  sync_batch = 4; checkpoint_every = 7; };
family: { enabled = false; };"
}

# The uninterrupted reference.
search_cfg ref
legr_mpirun 1 120 "$T/ref" "$T/ref.cfg"
expect_rc 0 "$T/ref" "uninterrupted search"
h5_history "$T/runs/ref/search.h5" >"$T/ref.txt"
[[ $(wc -l <"$T/ref.txt") == "$EVALS" ]] || fail "reference history has $(wc -l <"$T/ref.txt") rows"

# An interrupted checkpoint: readable, unfinished, stage "search".
check_interrupted() {
    local ck=$1 what=$2 n
    n=$(h5_history_len "$ck")
    ((n > 0 && n < EVALS)) || fail "$what: checkpoint holds $n of $EVALS results (not interrupted?)"
    grep -q '"search"' <<<"$(h5dump -a /stage "$ck")" || fail "$what: checkpoint stage is not 'search'"
    note "$what: $n/$EVALS results in the checkpoint"
}

# resume_and_compare NAME NP WHAT: resume NAME's checkpoint with NP ranks; the final history must
# equal the reference byte for byte.
resume_and_compare() {
    local name=$1 np=$2 what=$3
    legr_mpirun "$np" 120 "$T/$name.resume" --resume "$T/runs/$name/search.h5" "$T/$name.cfg"
    expect_rc 0 "$T/$name.resume" "$what: resumed search"
    expect_grep "resuming" "$T/$name.resume.err" "$what: resume announced"
    h5_history "$T/runs/$name/search.h5" >"$T/$name.txt"
    if ! cmp -s "$T/ref.txt" "$T/$name.txt"; then
        diff "$T/ref.txt" "$T/$name.txt" | cut -c1-100 | head >&2 || true
        fail "$what: resumed history differs from the uninterrupted one"
    fi
}

# 1. SIGKILL of the whole job (-np 2) after the first checkpoint; resumed with -np 3.
search_cfg killed
start_job_stopped "$T/killed" 2 120 "$T/killed.cfg"
freeze_at_first_checkpoint "$T/runs/killed/search.h5"
check_interrupted "$T/runs/killed/search.h5" "killed (frozen)"
kill_job_hard
[[ $RC != 0 ]] || fail "the killed job exited 0"
check_interrupted "$T/runs/killed/search.h5" "SIGKILL"
resume_and_compare killed 3 "SIGKILL"

# 2. SIGTERM to rank 0 (-np 2): exit code 4, a message on how to resume, a checkpoint that
# resumes (-np 1) to the same history.
search_cfg term
start_job_stopped "$T/term" 2 120 "$T/term.cfg"
freeze_at_first_checkpoint "$T/runs/term/search.h5"
check_interrupted "$T/runs/term/search.h5" "term (frozen)"
kill -TERM "$RANK0"
kill -CONT "$RANK0"
wait_job
if [[ $RC != 4 ]]; then show_run "$T/term"; fail "SIGTERM: exit code $RC, expected 4"; fi
expect_grep "legr-mpi --resume $T/runs/term/search.h5 $T/term.cfg" "$T/term.err" "SIGTERM: resume hint"
expect_grep "(MPI_Abort with exit code 4, resumable: the notice below is expected)" "$T/term.err" \
    "SIGTERM: the MPI_ABORT notice is announced"
wait_until 10 no_job_left || fail "SIGTERM: processes survive: $(job_pids)"
check_interrupted "$T/runs/term/search.h5" "SIGTERM"
resume_and_compare term 1 "SIGTERM"

# 3. SIGUSR1 to mpirun (as a batch system sends it; mpirun forwards it to the rank) with one
# rank, which evaluates candidates itself: exit 4 and an unfinished, consistent checkpoint.
search_cfg usr1
start_job_stopped "$T/usr1" 1 120 "$T/usr1.cfg"
freeze_at_first_checkpoint "$T/runs/usr1/search.h5"
check_interrupted "$T/runs/usr1/search.h5" "usr1 (frozen)"
mpirun_pid=$(pgrep -P "$JOB_PID" | head -n 1)
[[ -n $mpirun_pid ]] || fail "mpirun process not found"
kill -USR1 "$mpirun_pid"
wait_until 10 signal_pending "$RANK0" 10 || fail "mpirun did not forward SIGUSR1 to rank 0"
kill -CONT "$RANK0"
wait_job
if [[ $RC != 4 ]]; then show_run "$T/usr1"; fail "SIGUSR1: exit code $RC, expected 4"; fi
expect_grep "--resume" "$T/usr1.err" "SIGUSR1: resume hint"
check_interrupted "$T/runs/usr1/search.h5" "SIGUSR1"
n_stop=$(h5_history_len "$T/runs/usr1/search.h5")
# The history is a prefix of the uninterrupted one.
h5_history "$T/runs/usr1/search.h5" >"$T/usr1.txt"
head -n "$n_stop" "$T/ref.txt" | cmp -s - "$T/usr1.txt" || fail "SIGUSR1: history is not a prefix of the reference"

# 4. Broken checkpoints: missing, truncated, and not HDF5 at all.
legr_run 60 "$T/missing" --resume "$T/no-such-checkpoint.h5" "$T/ref.cfg"
expect_rc 3 "$T/missing" "missing checkpoint"
expect_grep "$T/no-such-checkpoint.h5" "$T/missing.err" "missing checkpoint: file named"

size=$(stat -c %s "$T/runs/ref/search.h5")
head -c $((size / 2)) "$T/runs/ref/search.h5" >"$T/truncated.h5"
legr_run 60 "$T/trunc" --resume "$T/truncated.h5" "$T/ref.cfg"
expect_rc 3 "$T/trunc" "truncated checkpoint"
expect_grep "$T/truncated.h5" "$T/trunc.err" "truncated checkpoint: file named"

head -c 4096 /dev/urandom >"$T/garbage.h5"
legr_mpirun 2 60 "$T/garbage" --resume "$T/garbage.h5" "$T/ref.cfg"
expect_rc 3 "$T/garbage" "garbage checkpoint under -np 2"
expect_grep "$T/garbage.h5" "$T/garbage.err" "garbage checkpoint: file named"

# 5. A checkpoint of another config (search.tau changed): refused, and the checkpoint is left as
# it was.
cp "$T/runs/term/search.h5" "$T/term-copy.h5"
search_cfg term 7
legr_run 60 "$T/othercfg" --resume "$T/runs/term/search.h5" "$T/term.cfg"
expect_rc 3 "$T/othercfg" "checkpoint of another config"
expect_grep "different config" "$T/othercfg.err" "another config: reason"
cmp -s "$T/term-copy.h5" "$T/runs/term/search.h5" || fail "a refused resume modified the checkpoint"

# 6. A checkpoint whose stored settings were altered (its config text still matches): an edited
# sigma is refused by name, and a stored tournament larger than the population (which would
# make every child take minutes) is refused as invalid; both exit 3 naming the file.
search_cfg term
"$PYTHON" - "$T/term-copy.h5" "$T/sigma.h5" "$T/sample.h5" <<'PY'
import shutil, sys, h5py, numpy as np
src, sigma, sample = sys.argv[1:]
shutil.copy(src, sigma)
with h5py.File(sigma, "r+") as f:
    f["search"].attrs["sigma"] = 2.5
shutil.copy(src, sample)
with h5py.File(sample, "r+") as f:
    f["search"].attrs["sample"] = np.int32(2**31 - 1)
PY
legr_run 60 "$T/sigma" --resume "$T/sigma.h5" "$T/term.cfg"
expect_rc 3 "$T/sigma" "altered sigma"
expect_grep "$T/sigma.h5: the stored /search attribute 'sigma' differs" "$T/sigma.err" "altered sigma: message"
legr_run 60 "$T/sample" --resume "$T/sample.h5" "$T/term.cfg"
expect_rc 3 "$T/sample" "tournament of 2^31 - 1"
expect_grep "$T/sample.h5: stored search parameters are invalid: search.sample = 2147483647 is more than" \
    "$T/sample.err" "tournament of 2^31 - 1: message"

# 7. A checkpoint from a build that had fewer config keys: its stored config lacks
# search.reuse_fitness, which then takes its default, so it still resumes (to the same history).
"$PYTHON" - "$T/term-copy.h5" "$T/older.h5" <<'PY'
import shutil, sys, h5py, numpy as np
src, dst = sys.argv[1:]
shutil.copy(src, dst)
with h5py.File(dst, "r+") as f:
    text = f.attrs["config"].decode()
    lines = [l for l in text.split("\n") if "reuse_fitness" not in l]
    assert len(lines) == len(text.split("\n")) - 1, "no reuse_fitness line in the stored config"
    old = "\n".join(lines).encode()
    del f.attrs["config"]
    f.attrs.create("config", np.bytes_(old), dtype=h5py.string_dtype("ascii", len(old)))
PY
legr_run 120 "$T/older" --resume "$T/older.h5" "$T/term.cfg"
expect_rc 0 "$T/older" "checkpoint of a build without search.reuse_fitness"
h5_history "$T/runs/term/search.h5" | cmp -s - "$T/ref.txt" || fail "resumed from the older build's checkpoint: history differs"

note "ok"
