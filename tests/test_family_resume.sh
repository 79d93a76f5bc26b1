#!/usr/bin/env bash
# The family stage checkpoints every level after every fine-tune epoch and on SIGTERM after the
# current step: the job stops with exit 4, and --resume continues the unfinished levels
# (skipping the finished ones, at the step where they stopped) to a
# family.h5 identical to an uninterrupted run's; unreadable or foreign level files are reported
# and those levels start over; the level files are removed once family.h5 is written.
source "$(dirname "$0")/lib.sh"

pretrain_base 2 32

# Two LeGR levels and the uniform baseline at each: 4 levels, two per rank, 40 epochs each: long
# enough that rank 0, let run in 20 ms slices until its first checkpoint, cannot finish level 1
# before the signal.
family_cfg() {
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/$1.cfg" "$1" 'search: { population = 4; sample = 2; evaluations = 8; tau = 2; batch = 16;
  val_limit = 32; mode = "deterministic"; sync_batch = 4; };
family: { flops = [0.7, 0.4]; epochs = 40; batch = 32; baselines = ["uniform"]; latency_repeats = 2; };'
}

# The uninterrupted reference.
family_cfg ref
legr_mpirun 2 180 "$T/ref" "$T/ref.cfg"
expect_rc 0 "$T/ref" "uninterrupted family"
[[ -f $T/runs/ref/family.h5 ]] || fail "no family.h5"
! compgen -G "$T/runs/ref/family-level-*.h5" >/dev/null || fail "level checkpoints left after family.h5"

# Interrupted: rank 0 is frozen at its first level checkpoint; both ranks get SIGTERM.
family_cfg job
start_job_stopped "$T/cut" 2 180 "$T/job.cfg"
freeze_at_first_checkpoint "$T/runs/job/family-level-00.h5"
for p in "$RANK0" $(pids_of_rank 1); do kill -TERM "$p" 2>/dev/null || true; done
kill -CONT "$RANK0"
wait_job
expect_rc 4 "$T/cut" "family stopped by SIGTERM"
expect_grep "continue with: legr-mpi --resume $T/runs/job/search.h5 $T/job.cfg" "$T/cut.err" "resume hint"
[[ ! -f $T/runs/job/family.h5 ]] || fail "a stopped family wrote family.h5"
# 144 training images in batches of 32: 4 steps per epoch, 160 per level. Rank 0 was frozen at
# the end of level 1's first epoch and stops after the step it was in when it resumed.
done0=$(h5_int_attr "$T/runs/job/family-level-00.h5" steps_done)
((done0 >= 4 && done0 < 160)) || fail "level 1 checkpoint holds $done0 steps, expected 4..159"
note "level 1 stopped after step $done0 of 160; level files: $(cd "$T/runs/job" && echo family-level-*.h5)"

# A job that loads its base (model.init) has no pretraining checkpoint: --resume with a model
# file, such as a level checkpoint, is refused.
legr_run 60 "$T/lvl" --resume "$T/runs/job/family-level-00.h5" "$T/job.cfg"
expect_rc 2 "$T/lvl" "a level checkpoint given to --resume"
expect_grep "this job does not pretrain (model.init is set)" "$T/lvl.err" "level file message"

# A file that is not HDF5 in place of level 4's checkpoint, and level 1's checkpoint copied to
# level 3 (another mask), are reported and those levels start over.
echo "not a checkpoint" >"$T/runs/job/family-level-03.h5"
cp "$T/runs/job/family-level-00.h5" "$T/runs/job/family-level-02.h5"
# A level file of a run with more levels is removed with the others at the end.
cp "$T/runs/job/family-level-00.h5" "$T/runs/job/family-level-07.h5"
legr_mpirun 2 180 "$T/res" --resume "$T/runs/job/search.h5" "$T/job.cfg"
expect_rc 0 "$T/res" "resumed family"
expect_grep "family: level 1: resuming $T/runs/job/family-level-00.h5 after step $done0 of 160" "$T/res.err" "resume message"
expect_grep "family: level 4: $T/runs/job/family-level-03.h5: not an HDF5 file" "$T/res.err" "bad level file message"
expect_grep "family: level 3: $T/runs/job/family-level-02.h5" "$T/res.err" "foreign level file message"
expect_grep "; fine-tuning it from the start" "$T/res.err" "bad level file consequence"
! compgen -G "$T/runs/job/family-level-*.h5" >/dev/null || fail "level checkpoints left after family.h5"

"$PYTHON" - "$T/runs/ref/family.h5" "$T/runs/job/family.h5" <<'PY' || fail "resumed family differs from the uninterrupted one"
import sys
import h5py
import numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
la, lb = sorted(a["levels"]), sorted(b["levels"])
assert la == lb and len(la) == 4, (la, lb)
n = 0
for lv in la:
    for grp in ("params", "buffers"):
        for k in a["levels"][lv][grp]:
            x, y = a["levels"][lv][grp][k][()], b["levels"][lv][grp][k][()]
            if not np.array_equal(x, y):
                print("differs:", lv, grp, k, float(np.abs(x - y).max()))
                sys.exit(1)
            n += 1
    for attr in ("test_top1", "test_loss", "test_top1_before"):
        if a["levels"][lv].attrs[attr] != b["levels"][lv].attrs[attr]:
            print("differs:", lv, attr)
            sys.exit(1)
print("identical tensors in 4 levels:", n)
PY
note "ok"
