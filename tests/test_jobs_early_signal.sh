# SLURM can send USR1 right after a job starts (it checks limits every 30 s and signals up to one
# period early). jobs/search.sbatch and jobs/family.sbatch must then survive it before legr-mpi
# runs (bash's default for USR1 is to die, which SLURM records as FAILED), requeue the job
# without starting legr-mpi, and say so. Run outside SLURM, with stand-ins for scontrol (records
# the call, then ends the script as a requeue does) and mpirun (must not be called); the USR1
# arrives while the script reads its run directory through legr-mpi --dry-run.
source "$(dirname "$0")/lib.sh"

mkdir -p "$T/bin"
# legr-mpi stand-in: for --dry-run, signal the script first (its pid is in script.pid), then run
# the real dry run; anything else would mean the script started legr-mpi.
cat >"$T/bin/legr" <<EOF
#!/usr/bin/env bash
if [[ " \$* " == *" --dry-run "* ]]; then
    for _ in \$(seq 50); do [[ -s "$T/script.pid" ]] && break; sleep 0.1; done
    kill -USR1 "\$(cat "$T/script.pid")"
    sleep 0.5
    exec "$LEGR_BIN" "\$@"
fi
echo "legr-mpi \$*" >>"$T/started.log"
EOF
cat >"$T/bin/mpirun" <<EOF
#!/usr/bin/env bash
echo "mpirun \$*" >>"$T/started.log"
EOF
cat >"$T/bin/scontrol" <<EOF
#!/usr/bin/env bash
echo "scontrol \$*" >>"$T/scontrol.log"
kill -TERM "\$PPID"
EOF
chmod +x "$T/bin/legr" "$T/bin/mpirun" "$T/bin/scontrol"

write_cfg "$T/job.cfg" early
# The family job needs a finished search to start from: only its "stage" attribute is read
# before legr-mpi would run.
mkdir -p "$T/runs/early"
"$PYTHON" -c "import h5py,sys; h5py.File(sys.argv[1], 'w').attrs['stage'] = 'done'" \
    "$T/runs/early/search.h5"

# run_job JOB: run jobs/JOB.sbatch to its requeue, with the checks every early USR1 needs; its
# output is left in $out.
run_job() {
    local job=$1 pid watchdog rc
    rm -f "$T/script.pid" "$T/scontrol.log" "$T/started.log"
    set +e
    PATH="$T/bin:$PATH" SLURM_JOB_ID=4242 SLURM_RESTART_COUNT=0 LEGR_BIN="$T/bin/legr" \
        LEGR_MPIRUN="$T/bin/mpirun" bash "$LEGR_SRC/jobs/$job.sbatch" "$T/job.cfg" \
        >"$T/$job.out" 2>&1 &
    pid=$!
    echo "$pid" >"$T/script.pid"
    (sleep 60 && kill -KILL "$pid") >/dev/null 2>&1 &
    watchdog=$!
    wait "$pid"
    rc=$?
    kill "$watchdog" 2>/dev/null
    set -e
    out=$(cat "$T/$job.out")
    # 143: ended by the scontrol stand-in's TERM, as SLURM ends a job it requeues.
    [[ $rc == 143 ]] || fail "$job.sbatch exited with $rc, not ended by the requeue: $out"
    grep -qF "USR1 before legr-mpi started" <<<"$out" || fail "$job.sbatch did not say why: $out"
    grep -qx "scontrol requeue 4242" "$T/scontrol.log" 2>/dev/null ||
        fail "$job.sbatch did not requeue job 4242: $out"
    [[ ! -e $T/started.log ]] || fail "$job.sbatch started legr-mpi anyway: $(cat "$T/started.log")"
    note "$job.sbatch: $(grep -F 'USR1 before' <<<"$out")"
}

for job in search family; do
    run_job $job
done
grep -qF "the next start resumes the search from $T/runs/early/search.h5" "$T/search.out" ||
    fail "search.sbatch did not name its checkpoint: $(cat "$T/search.out")"
# With nothing saved yet, the requeue message must not promise a checkpoint.
rm "$T/runs/early/search.h5"
run_job search
grep -qF "the next start begins anew: $T/runs/early holds no checkpoint yet" <<<"$out" ||
    fail "search.sbatch without a checkpoint: $out"
note "both job scripts survive an early USR1 and requeue without starting legr-mpi"
