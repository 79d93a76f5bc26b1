#!/usr/bin/env bash
# Pretraining checkpoints every epoch and, on SIGTERM, after the current step: the job stops with
# exit 4 and --resume pretrain.h5 ends with exactly the base network of an uninterrupted run;
# foreign files are refused.
source "$(dirname "$0")/lib.sh"

PRE='pretrain: { epochs = 6; batch = 16; lr = 0.05; };
search: { enabled = false; };
family: { enabled = false; };'

# The uninterrupted reference.
write_cfg "$T/ref.cfg" ref "$PRE"
legr_mpirun 2 120 "$T/ref" "$T/ref.cfg"
expect_rc 0 "$T/ref" "uninterrupted pretraining"
[[ -f $T/runs/ref/pretrain.h5 ]] || fail "no pretrain.h5 checkpoint written"

# Interrupted: rank 0 is frozen at its first pretraining checkpoint, then gets SIGTERM.
write_cfg "$T/job.cfg" job "$PRE"
start_job_stopped "$T/cut" 2 120 "$T/job.cfg"
freeze_at_first_checkpoint "$T/runs/job/pretrain.h5"
kill -TERM "$RANK0"
kill -CONT "$RANK0"
wait_job
expect_rc 4 "$T/cut" "pretraining stopped by SIGTERM"
expect_grep "continue with: legr-mpi --resume $T/runs/job/pretrain.h5" "$T/cut.err" "resume hint"
[[ ! -f $T/runs/job/base.h5 ]] || fail "a stopped pretraining wrote base.h5"
# 144 training images in batches of 16: 9 steps per epoch. Rank 0 was frozen at its first
# checkpoint (the end of epoch 1) and stops after the step it was in when it resumed.
done_steps=$(h5_int_attr "$T/runs/job/pretrain.h5" steps_done)
cp "$T/runs/job/pretrain.h5" "$T/old.h5"
((done_steps >= 9 && done_steps < 54)) || fail "pretrain.h5 holds $done_steps steps, expected 9..53"
note "stopped after step $done_steps of 54"

# Resumed (with another rank count: results do not depend on it beyond summation order, so
# compare with the tolerance of test_pretrain_ranks; the same count must match exactly).
legr_mpirun 2 120 "$T/res" --resume "$T/runs/job/pretrain.h5" "$T/job.cfg"
expect_rc 0 "$T/res" "resumed pretraining"
expect_grep "resuming $T/runs/job/pretrain.h5 after step $done_steps" "$T/res.err" "resume message"
"$PYTHON" - "$T/runs/ref/base.h5" "$T/runs/job/base.h5" <<'PY' || fail "resumed base differs from the uninterrupted one"
import sys
import h5py
import numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
n = 0
for grp in ("params", "buffers"):
    for k in a[grp]:
        x, y = a[grp][k][()], b[grp][k][()]
        if not np.array_equal(x, y):
            print("differs:", grp, k, float(np.abs(x - y).max()))
            sys.exit(1)
        n += 1
print("identical tensors:", n)
PY

# A checkpoint of another config is refused; so is a file that is not a checkpoint.
sed 's/lr = 0.05/lr = 0.04/' "$T/job.cfg" >"$T/other.cfg"
legr_run 60 "$T/other" --resume "$T/runs/job/pretrain.h5" "$T/other.cfg"
expect_rc 3 "$T/other" "pretraining checkpoint of another config"
expect_grep "belongs to a different config" "$T/other.err" "config mismatch message"
legr_run 60 "$T/model" --resume "$T/runs/job/base.h5" "$T/job.cfg"
expect_rc 3 "$T/model" "a model file given to --resume"
expect_grep "not a training checkpoint" "$T/model.err" "model file message"

# A checkpoint of an earlier build has no steps_done: it resumes at its whole epochs.
old_epochs=$("$PYTHON" -c "import h5py,sys; f=h5py.File(sys.argv[1],'a'); del f.attrs['steps_done']; print(int(f.attrs['epochs_done']))" "$T/old.h5")
legr_mpirun 2 120 "$T/old" --resume "$T/old.h5" "$T/job.cfg"
expect_rc 0 "$T/old" "resuming a checkpoint without steps_done"
expect_grep "resuming $T/old.h5 after step $((old_epochs * 9)) (epoch $old_epochs)" "$T/old.err" "old checkpoint resume message"
note "ok"
