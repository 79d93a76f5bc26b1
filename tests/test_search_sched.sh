# No rank idles during a search: at -np 2, 3 and 4 (oversubscribed on 2 cores) every rank,
# rank 0 included, spends the search's wall time evaluating except for at most about one
# candidate's time (the end, when work runs out, and the start), so the per-rank candidate
# counts differ by no more than their candidate times explain. The figures come from the job's
# own report (the "search_ranks" log event) and its per-candidate seconds, whose split into
# pruning, tau steps and validation must account for them.
source "$(dirname "$0")/lib.sh"
pretrain_base 1 32
# The sanitizer build checks -np 3 only (rank 0 and two workers; the same dispatch).
nps="2 3 4"
# Candidates long enough (tau steps) that the scheduler's time slices of oversubscribed ranks,
# tens of ms, stay small beside one candidate on a fast machine; the sanitizer build's are slow
# enough at 30. Every candidate is evaluated (reuse_fitness off): the counts measure scheduling.
tau=120
((SANITIZED)) && nps=3 tau=30
for np in $nps; do
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/s$np.cfg" "s$np" 'search: { population = 8; sample = 2; evaluations = 36;
    tau = '$tau'; batch = 32; target_flops = 0.5; val_limit = 48; reuse_fitness = false; };
family: { enabled = false; };'
    legr_mpirun "$np" 120 "$T/s$np" "$T/s$np.cfg"
    expect_rc 0 "$T/s$np" "search at -np $np"
    expect_grep "search: rank $((np - 1)): " "$T/s$np.err" "-np $np: the per-rank report"
    "$PYTHON" - "$T/runs/s$np/log.jsonl" "$np" <<'PY'
import json, sys
path, np_ = sys.argv[1], int(sys.argv[2])
ev = [json.loads(l) for l in open(path)]
ranks = [e for e in ev if e["event"] == "search_ranks"][-1]
cands = [e for e in ev if e["event"] == "candidate"]
wall, count, busy = ranks["wall_seconds"], ranks["candidates"], ranks["busy_seconds"]
for c in cands:
    parts = (c["prune_s"], c["train_s"], c["val_s"])
    assert min(parts) >= 0 and c["train_s"] > 0 and c["val_s"] > 0, c
    assert abs(sum(parts) - c["seconds"]) <= 0.01 + 0.01 * c["seconds"], c
assert len(count) == np_ and sum(count) == 36, (count, np_)
for r in range(np_):
    secs = [c["seconds"] for c in cands if c["rank"] == r]
    assert len(secs) == count[r] and count[r] > 0, "rank %d evaluated nothing" % r
    longest = max(secs)
    idle = wall - busy[r]
    print("-np %d rank %d: %2d candidates, busy %.2f of %.2f s, idle %.2f s, longest candidate %.2f s"
          % (np_, r, count[r], busy[r], wall, idle, longest))
    # Idle at most about one candidate: while work remains nobody waits.
    assert idle <= 2 * longest + 0.1 * wall, "rank %d idled %.2f s" % (r, idle)
PY
done
note "OK"
