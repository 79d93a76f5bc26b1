# Shared by tools/bench_search.sh and tools/bench_candidates.sh (sourced): run one search job and
# time its search stage.
#
# bench_search_job NAME DIR EVALS MPIRUN_ARGS...: runs `mpirun MPIRUN_ARGS... legr-mpi DIR/job.cfg`
# (the caller names the binary among the args), timestamps every stderr/stdout line with
# $EPOCHREALTIME into DIR/err.txt, fails (exit 1, naming NAME) when the job fails or DIR's run
# "bench" logged other than EVALS candidates, and sets T0 and T1 to the moments of rank 0's
# "search: N evaluations at" line and of "search: done". BENCH_TIMEOUT (seconds), when set,
# bounds the whole job.
bench_search_job() {
    local name=$1 dir=$2 evals=$3 rc=0 n
    shift 3
    ${BENCH_TIMEOUT:+timeout -k 5 "$BENCH_TIMEOUT"} mpirun "$@" 2>&1 |
        while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$dir/err.txt" ||
        rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 20 "$dir/err.txt" >&2
        echo "$name: the job failed (exit $rc)" >&2
        exit 1
    fi
    T0=$(grep -m1 ' search: [0-9]* evaluations at' "$dir/err.txt" | cut -d' ' -f1)
    T1=$(grep -m1 ' search: done' "$dir/err.txt" | cut -d' ' -f1)
    n=$(grep -c '"event":"candidate"' "$dir/runs/bench/log.jsonl")
    [ "$n" = "$evals" ] || { echo "$name: $n candidate events, expected $evals" >&2; exit 1; }
}
