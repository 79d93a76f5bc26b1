# A worker rank killed with SIGKILL in the middle of a search makes the whole job exit non-zero
# (well before mpirun's time limit, with no rank left behind), and the last checkpoint is intact:
# readable with h5py and resumable to a complete search.
source "$(dirname "$0")/lib.sh"

EVALS=160
write_cfg "$T/job.cfg" crash "pretrain: { epochs = 1; batch = 32; };
search: { population = 6; sample = 3; evaluations = $EVALS; mutate_fraction = 0.3; tau = 2;
  batch = 8; val_limit = 16; mode = \"async\"; checkpoint_every = 4; };
family: { enabled = false; };"

LIMIT=60
start_job_stopped "$T/crash" 3 $LIMIT "$T/job.cfg"
# Rank 0 is held at the first checkpoint (however fast the machine), the worker is killed, and
# rank 0 runs on into the crash.
freeze_at_first_checkpoint "$T/runs/crash/search.h5"
grep -q "search: $EVALS evaluations" "$T/crash.err" || fail "the search did not start"
worker=$(pids_of_rank 1)
[[ -n $worker ]] || fail "rank 1 process not found"
t0=$SECONDS
kill -KILL "$worker"
kill -CONT "$RANK0"
wait_job
elapsed=$((SECONDS - t0))
# mpirun passes on the dead rank's status (137 = killed by signal 9). 110 (mpirun's --timeout),
# 124 (timeout(1)) or reaching the limit would mean the job hung.
[[ $RC != 0 ]] || fail "the job exited 0 after its worker was killed"
if [[ $RC == 110 || $RC == 124 ]] || ((elapsed >= LIMIT)); then
    fail "the job hung after its worker was killed (exit $RC after ${elapsed}s)"
fi
note "mpirun exited $RC, ${elapsed}s after the worker was killed"
wait_until 10 no_job_left || fail "ranks survive the crash: $(job_pids)"

# The checkpoint is a complete legr-checkpoint of an unfinished search.
"$PYTHON" - "$T/runs/crash/search.h5" "$EVALS" <<'EOF'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["format"].decode() == "legr-checkpoint", "format"
    ids = list(f["search/history/id"][()]) + list(f["search/inflight/id"][()])
    n = len(f["search/history/id"])
    # mpirun ends the other ranks about 2 s after the crash; meanwhile the async master goes on
    # with the surviving worker, so the search may have come close to its end.
    assert 0 < n <= int(sys.argv[2]), "history holds %d results" % n
    assert sorted(ids) == list(range(int(f["search"].attrs["next_id"]))), "ids not consistent"
    print("checkpoint after the crash: %d results, %d in flight" % (n, len(f["search/inflight/id"])))
EOF
test ! -e "$T/runs/crash/search.h5.tmp" || note "a stale search.h5.tmp remains (allowed)"

# Resume it (the base network is the run's own base.h5) to the end.
legr_mpirun 2 120 "$T/resume" --resume "$T/runs/crash/search.h5" "$T/job.cfg"
expect_rc 0 "$T/resume" "resume after the crash"
"$PYTHON" - "$T/runs/crash/search.h5" "$EVALS" <<'EOF'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    ids = sorted(f["search/history/id"][()])
    assert ids == list(range(int(sys.argv[2]))), "resumed history is not complete: %s" % ids
    assert len(f["search/inflight/id"]) == 0, "candidates still in flight"
    assert f.attrs["stage"].decode() == "done", "stage %r" % f.attrs["stage"]
EOF

note "ok"
