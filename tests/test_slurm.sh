# A real single-node SLURM on localhost runs jobs/pipeline.sh: the search job gets USR1 before its
# 1-minute limit, checkpoints, requeues itself and resumes until the deterministic search is done;
# its history must equal an uninterrupted run's. The chained family job gets USR1 the same way in
# the middle of its fine-tuning, saves the level, requeues itself and resumes it; the family must
# equal the uninterrupted run's. Skips (exit 0, with the reason) only when the SLURM daemons
# cannot be started here.
source "$(dirname "$0")/lib.sh"

# munged (user munge) must reach the socket under $T.
chmod 711 "$T"
slurm_dir=$T/slurm
port=$((20000 + ($$ % 4000) * 2))
export LEGR_SLURM_PORT=$port

skip() {
    echo "test_slurm: SKIP: $*"
    exit 0
}
if ! "$LEGR_SRC/tools/install-deps.sh" --slurm >"$T/deps.log" 2>&1; then
    tail -3 "$T/deps.log"
    skip "the SLURM packages are missing and cannot be installed here (see above)"
fi
if ! env_line=$("$LEGR_SRC/tools/slurm-local.sh" start "$slurm_dir" 2>"$T/slurm-start.log"); then
    cat "$T/slurm-start.log"
    skip "the SLURM daemons cannot start here (see above)"
fi
eval "$env_line"
sid=
fid=
stop_slurm() {
    local rc=$?
    [[ -n $sid ]] && scancel "$sid" 2>/dev/null
    [[ -n $fid ]] && scancel "$fid" 2>/dev/null
    "$LEGR_SRC/tools/slurm-local.sh" stop "$slurm_dir" 2>/dev/null
    (exit $rc)
    cleanup_tmp
}
trap stop_slurm EXIT

# The base network, trained once outside SLURM.
write_cfg "$T/base.cfg" base 'pretrain: { epochs = 1; batch = 32; };
search: { enabled = false; };
family: { enabled = false; };'
legr_run 60 "$T/base" "$T/base.cfg"
expect_rc 0 "$T/base" "pretraining the base"

# A deterministic search that outlasts a start's time before USR1: 0-30 s with --time=1 and
# --signal=B:USR1@50, since SLURM checks time limits about every 30 s and signals up to one check
# period early (a start cut before legr-mpi runs just requeues; test_jobs_early_signal). Its length in candidates
# is calibrated on this machine and build to about 70 s of one worker; every candidate is
# fine-tuned (reuse_fitness off), or the many twins of this small search would end it early.
# (The sanitizer build does not register this test: tests/CMakeLists.txt.)
tau=80
# The family (one level) is calibrated the same way to about 40 s of fine-tuning; the family job
# gets USR1 0-30 s after each start (--time=1, --signal=B:USR1@58), so the first start is cut.
# One rank fine-tunes the level (family.ranks_per_level = 1) in the job as in the single-process
# reference: two ranks would sum the gradients in another order, and the families would differ
# by rounding (rank groups' resume is test_family_resume's).
job_cfg() {
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/$1.cfg" "$1" "search: { population = 8; sample = 3; evaluations = $2;
  mutate_fraction = 0.3; tau = $tau; batch = 32; val_limit = 96; mode = \"deterministic\";
  sync_batch = 4; checkpoint_every = 4; reuse_fitness = false; };
family: { flops = [0.5]; epochs = $3; batch = 16; latency_repeats = 3; ranks_per_level = 1; };"
}
job_cfg calib 8 20
legr_run 200 "$T/calib" "$T/calib.cfg"
expect_rc 0 "$T/calib" "calibration search"
# The candidates' own seconds (log.jsonl), not the run's wall time: start-up and the family would
# make a fast machine's candidates look slower than they are, and the search too short.
ms=$("$PYTHON" -c "import json,sys; print(int(1000 * sum(e['seconds'] for e in map(json.loads, open(sys.argv[1])) if e.get('event') == 'candidate')))" "$T/runs/calib/log.jsonl")
fms=$("$PYTHON" -c "import h5py,sys; print(int(1000 * h5py.File(sys.argv[1])['levels/00'].attrs['finetune_seconds']))" "$T/runs/calib/family.h5")
EVALS=$((8 * 70000 / (ms > 1 ? ms : 1)))
((EVALS < 24)) && EVALS=24
((EVALS > 5000)) && EVALS=5000
FEPOCHS=$((20 * 40000 / (fms > 1 ? fms : 1)))
((FEPOCHS < 20)) && FEPOCHS=20
((FEPOCHS > 20000)) && FEPOCHS=20000
note "8 candidates took $ms ms, 20 fine-tune epochs $fms ms: searching $EVALS candidates, fine-tuning $FEPOCHS epochs"
job_cfg ref "$EVALS" "$FEPOCHS"
job_cfg slurm "$EVALS" "$FEPOCHS"

cd "$T"
out=$(LEGR_BIN=$LEGR_BIN LEGR_MPIRUN=$MPIEXEC LEGR_MPIRUN_ARGS="--oversubscribe" \
      LEGR_POLL_SECONDS=2 \
      LEGR_SEARCH_SBATCH_ARGS="--ntasks=2 --time=1 --signal=B:USR1@50 --output=$T/search-%j.out" \
      LEGR_FAMILY_SBATCH_ARGS="--ntasks=2 --time=1 --signal=B:USR1@58 --output=$T/family-%j.out" \
      "$LEGR_SRC/jobs/pipeline.sh" "$T/slurm.cfg") || fail "pipeline.sh failed: $out"
read -r sid fid <<<"$(tail -1 <<<"$out")"
[[ $sid =~ ^[0-9]+$ && $fid =~ ^[0-9]+$ ]] || fail "pipeline.sh printed no job ids: $out"
note "search job $sid, family job $fid"

# The uninterrupted reference, meanwhile, outside SLURM.
timeout -k 5 300 "$LEGR_BIN" "$T/ref.cfg" \
    >"$T/ref.out" 2>"$T/ref.err" &
ref_pid=$!

field() { grep -o -m1 "$1=[^ ]*" <<<"$2" | cut -d= -f2; }
is_failed() { case $1 in FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) return 0 ;; esac; return 1; }
# A requeued job waits 2 minutes (SLURM's BeginTime after a requeue); expedite ID SHOW moves its
# start to 3 s from now, once per requeue (each update would push the start again). Not "now":
# slurmd revokes the previous start's credential with a 1-second resolution, and a start within
# the same second is killed as "Job credential revoked" (FAILED).
declare -A expedited=()
expedite() {
    local r
    [[ $(field JobState "$2") == PENDING && $(field Reason "$2") == BeginTime ]] || return 0
    r=$(field Restarts "$2")
    [[ ${expedited[$1]:-} == "$r" ]] && return 0
    scontrol update JobId="$1" StartTime=now+3 2>/dev/null && expedited[$1]=$r
    return 0
}
# Follow both jobs.
max_restarts=0
f_restarts=0
end=$((SECONDS + 420))
while :; do
    s=$(scontrol show job "$sid" 2>/dev/null) || fail "scontrol lost job $sid"
    f=$(scontrol show job "$fid" 2>/dev/null) || fail "scontrol lost job $fid"
    s_state=$(field JobState "$s")
    f_state=$(field JobState "$f")
    restarts=$(field Restarts "$s")
    ((restarts > max_restarts)) && max_restarts=$restarts
    restarts=$(field Restarts "$f")
    ((restarts > f_restarts)) && f_restarts=$restarts
    expedite "$sid" "$s"
    expedite "$fid" "$f"
    [[ $f_state == COMPLETED ]] && break
    # Believe an end state only when it is still there a few seconds later: cheap insurance
    # against a requeue passing through one. (The FAILED that first prompted this was real: a
    # restart refused with "Job credential revoked", see expedite; polling at 0.1 s has not
    # shown a transient end state since.)
    if is_failed "$f_state" || is_failed "$s_state"; then
        sleep 3
        f_state=$(field JobState "$(scontrol show job "$fid" 2>/dev/null)")
        s_state=$(field JobState "$(scontrol show job "$sid" 2>/dev/null)")
        if is_failed "$f_state" || is_failed "$s_state"; then break; fi
    fi
    ((SECONDS < end)) || fail "jobs not done after 420 s (search $s_state, family $f_state)"
    sleep 1
done
wait "$ref_pid" || { show_run "$T/ref"; fail "the reference run failed"; }

slog=$(ls "$T"/search-"$sid".out 2>/dev/null || true)
show_logs() {
    echo "---- search job log ----" >&2
    cat "$slog" >&2 || true
    echo "---- family job log ----" >&2
    tail -n 20 "$T"/family-"$fid".out >&2 || true
}
if [[ $s_state != COMPLETED || $f_state != COMPLETED ]]; then
    show_logs
    echo "---- slurmctld log on jobs $sid and $fid ----" >&2
    grep -E "JobId=($sid|$fid)\b" "$slurm_dir/slurmctld.log" | tail -n 20 >&2 || true
    fail "search job $s_state, family job $f_state (both should be COMPLETED)"
fi
note "search job restarted $max_restarts time(s)"
((max_restarts >= 1)) || { show_logs; fail "the search job was never requeued (search too short?)"; }
for pat in "USR1: forwarding it to mpirun" "legr-mpi ended with exit code 4" "requeueing" \
           "search: resuming $T/runs/slurm/search.h5"; do
    grep -qF -- "$pat" "$slog" || { show_logs; fail "search job log lacks '$pat'"; }
done
note "family job restarted $f_restarts time(s)"
((f_restarts >= 1)) || { show_logs; fail "the family job was never requeued (family too short?)"; }
for pat in "USR1: forwarding it to mpirun" "legr-mpi ended with exit code 4" "requeueing" \
           "family: level 1: resuming $T/runs/slurm/family-level-00.h5 after step"; do
    grep -qF -- "$pat" "$T"/family-"$fid".out || { show_logs; fail "family job log lacks '$pat'"; }
done

# Same history as the uninterrupted run, the search finished, the family built from it.
h5_history "$T/runs/ref/search.h5" >"$T/ref.txt"
h5_history "$T/runs/slurm/search.h5" >"$T/slurm.txt"
[[ $(wc -l <"$T/ref.txt") == "$EVALS" ]] || fail "reference history has $(wc -l <"$T/ref.txt") rows"
if ! cmp -s "$T/ref.txt" "$T/slurm.txt"; then
    diff "$T/ref.txt" "$T/slurm.txt" | cut -c1-100 | head >&2 || true
    fail "the requeued search's history differs from the uninterrupted one"
fi
grep -q '"done"' <<<"$(h5dump -a /stage "$T/runs/slurm/search.h5")" || fail "checkpoint stage is not done"
test -s "$T/runs/slurm/family.h5" || { show_logs; fail "the family job wrote no family.h5"; }
grep -qF "family written" "$T"/family-"$fid".out || { show_logs; fail "family job log"; }
"$PYTHON" - "$T/runs/ref/family.h5" "$T/runs/slurm/family.h5" <<'EOF' || fail "families differ"
import sys
import h5py
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
for k in ("flops", "params", "test_top1", "test_loss"):
    if a["levels/00"].attrs[k] != b["levels/00"].attrs[k]:
        sys.exit("level 0 %s: %r vs %r" % (k, a["levels/00"].attrs[k], b["levels/00"].attrs[k]))
for k in a["levels/00/params"]:
    if (a["levels/00/params"][k][()] != b["levels/00/params"][k][()]).any():
        sys.exit("level 0 tensor %s differs" % k)
EOF
note "requeued search resumed to the uninterrupted history; requeued family resumed to the uninterrupted family"
