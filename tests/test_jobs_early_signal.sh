# SLURM can send USR1 right after a job starts (it checks limits every 30 s and signals up to one
# period early). jobs/search.sbatch and jobs/family.sbatch must then survive it before legr-mpi
# runs (bash's default for USR1 is to die, which SLURM records as FAILED), requeue the job
# without starting legr-mpi, and say so. Run outside SLURM, with stand-ins for scontrol (records
# the call, then ends the script as a requeue does) and mpirun (must not be called); the USR1
# arrives while the script reads its run directory through legr-mpi --dry-run. Then the USR1 that
# mpirun drops or dies of as it starts (stand-ins again, in front of the real legr-mpi).
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
echo "started legr-mpi \$*" >>"$T/started.log"
EOF
cat >"$T/bin/mpirun" <<EOF
#!/usr/bin/env bash
echo "started mpirun \$*" >>"$T/started.log"
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

# run_sbatch JOB CONFIG LEGR_BIN MPIRUN [VAR=VALUE...]: run jobs/JOB.sbatch CONFIG with those
# stand-ins (and environment) until the scontrol stand-in ends it as a requeue; it must have
# requeued job 4242 and not have started anything that writes started.log. Its output is left
# in $out.
run_sbatch() {
    local job=$1 cfg=$2 bin=$3 mpirun=$4 pid watchdog rc
    shift 4
    rm -f "$T/script.pid" "$T/scontrol.log" "$T/started.log" "$T/dropped.log"
    set +e
    # (ASAN_OPTIONS as lib.sh gives legr-mpi: the real one runs behind mpirun-deaf.)
    env PATH="$T/bin:$PATH" SLURM_JOB_ID=4242 SLURM_RESTART_COUNT=0 LEGR_BIN="$bin" \
        LEGR_MPIRUN="$mpirun" ASAN_OPTIONS="$LEGR_ASAN_OPTIONS" "$@" bash "$LEGR_SRC/jobs/$job.sbatch" "$cfg" >"$T/$job.out" 2>&1 &
    pid=$!
    echo "$pid" >"$T/script.pid"
    (sleep 120 && kill -KILL "$pid") >/dev/null 2>&1 &
    watchdog=$!
    wait "$pid"
    rc=$?
    kill "$watchdog" 2>/dev/null
    set -e
    out=$(cat "$T/$job.out")
    # 143: ended by the scontrol stand-in's TERM, as SLURM ends a job it requeues.
    [[ $rc == 143 ]] || fail "$job.sbatch exited with $rc, not ended by the requeue: $out"
    grep -qx "scontrol requeue 4242" "$T/scontrol.log" 2>/dev/null ||
        fail "$job.sbatch did not requeue job 4242: $out"
    [[ ! -e $T/started.log ]] || fail "$job.sbatch: $(cat "$T/started.log")"
}

# run_job JOB: the USR1 comes while jobs/JOB.sbatch reads its run directory.
run_job() {
    run_sbatch "$1" "$T/job.cfg" "$T/bin/legr" "$T/bin/mpirun"
    grep -qF "USR1 before legr-mpi started" <<<"$out" || fail "$1.sbatch did not say why: $out"
    note "$1.sbatch: $(grep -F 'USR1 before' <<<"$out")"
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

# Later in the start the USR1 reaches mpirun itself. mpirun drops one that comes before it has
# started the ranks, and it or a rank that is still loading dies of it (exit 138). Stand-ins for
# both: mpirun-deaf swallows the USR1 the script forwards, then runs the real legr-mpi as one
# process, which must get the script's repeat (LEGR_USR1_RESEND) and stop cleanly; mpirun-dies
# dies of it.
cat >"$T/bin/mpirun-deaf" <<EOF
#!/usr/bin/env bash
trap 'echo dropped >>"$T/dropped.log"' USR1
kill -USR1 "\$PPID"
for _ in \$(seq 100); do [[ -s "$T/dropped.log" ]] && break; sleep 0.05; done
trap - USR1
exec "\$@"
EOF
cat >"$T/bin/mpirun-dies" <<EOF
#!/usr/bin/env bash
kill -USR1 "\$PPID"
sleep 20
echo "mpirun-dies survived the USR1" >>"$T/started.log"
EOF
chmod +x "$T/bin/mpirun-deaf" "$T/bin/mpirun-dies"

write_cfg "$T/lost.cfg" lost 'pretrain: { epochs = 100000; batch = 16; };
search: { enabled = false; };
family: { enabled = false; };'
run_sbatch search "$T/lost.cfg" "$LEGR_BIN" "$T/bin/mpirun-deaf" LEGR_USR1_RESEND=1
[[ -s $T/dropped.log ]] || fail "the mpirun stand-in never got the forwarded USR1: $out"
grep -qF "legr-mpi ended with exit code 4" <<<"$out" || fail "legr-mpi did not stop cleanly on the repeated USR1: $out"
grep -qF "the next start resumes pretraining from $T/runs/lost/pretrain.h5" <<<"$out" ||
    fail "no pretraining checkpoint named: $out"
test -s "$T/runs/lost/pretrain.h5" || fail "no pretrain.h5 after the stop"
note "a USR1 that mpirun dropped is repeated: legr-mpi stopped with 4 and the job requeued"

"$PYTHON" -c "import h5py,sys; h5py.File(sys.argv[1], 'w').attrs['stage'] = 'done'" \
    "$T/runs/early/search.h5"
for job in search family; do
    run_sbatch $job "$T/job.cfg" "$LEGR_BIN" "$T/bin/mpirun-dies"
    grep -qF "legr-mpi ended with exit code 138" <<<"$out" || fail "$job.sbatch: mpirun-dies did not die of the USR1: $out"
    grep -qF "was starting when USR1 came and died of it" <<<"$out" || fail "$job.sbatch did not say why it requeues: $out"
done
note "both job scripts requeue when mpirun dies of the forwarded USR1"
