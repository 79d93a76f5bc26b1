# Deterministic search mode: from the same base network, -np 1, -np 2 and -np 3 produce identical
# search histories (ids, parents, alpha, kappa, fitness) in search.h5, also with fitness reuse
# off or the target given twice, and the best candidate of that history is the one reported as
# "search_done" in log.jsonl.
source "$(dirname "$0")/lib.sh"

# The base network: a short pretraining, saved as base.h5.
pretrain_base 1 16

SEARCH='search: { population = 6; sample = 3; evaluations = 20; mutate_fraction = 0.3; tau = 2;
  batch = 8; val_limit = 16; mode = "deterministic"; sync_batch = 4; checkpoint_every = 5; };
family: { enabled = false; };'
for np in 1 2 3; do
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/np$np.cfg" "np$np" "$SEARCH"
    legr_mpirun "$np" 120 "$T/np$np" "$T/np$np.cfg"
    expect_rc 0 "$T/np$np" "deterministic search -np $np"
    h5_history "$T/runs/np$np/search.h5" >"$T/hist$np.txt"
done

# Fitness reuse (on by default) changes no result: with it off, evaluating every duplicate again,
# the history is the same.
MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
    write_cfg "$T/noreuse.cfg" noreuse "${SEARCH/mode = /reuse_fitness = false; mode = }"
legr_mpirun 2 120 "$T/noreuse" "$T/noreuse.cfg"
expect_rc 0 "$T/noreuse" "deterministic search without reuse"
h5_history "$T/runs/noreuse/search.h5" >"$T/hist_noreuse.txt"
cmp -s "$T/hist1.txt" "$T/hist_noreuse.txt" || { diff "$T/hist1.txt" "$T/hist_noreuse.txt" | head >&2 || true; fail "histories with and without fitness reuse differ"; }

# A list of targets goes through the whole search (config, evaluation, fitness keys): with the
# default target twice, every fitness is (f + f) / 2 = f, so the history is the same again.
MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
    write_cfg "$T/twice.cfg" twice "${SEARCH/mode = /target_flops = [0.5, 0.5]; mode = }"
legr_mpirun 2 120 "$T/twice" "$T/twice.cfg"
expect_rc 0 "$T/twice" "deterministic search at the target list [0.5, 0.5]"
expect_grep "at 50%, 50% FLOPs (fitness: the mean over them)" "$T/twice.err" "the search's targets"
h5_history "$T/runs/twice/search.h5" >"$T/hist_twice.txt"
expect_grep "search: 20/20 evaluations (" "$T/twice.err" "the progress line with its reuse count"
cmp -s "$T/hist1.txt" "$T/hist_twice.txt" || { diff "$T/hist1.txt" "$T/hist_twice.txt" | head >&2 || true; fail "the target list [0.5, 0.5] changed the history"; }

[[ $(wc -l <"$T/hist1.txt") == 20 ]] || fail "np 1 history has $(wc -l <"$T/hist1.txt") rows, expected 20"
cmp -s "$T/hist1.txt" "$T/hist2.txt" || { diff "$T/hist1.txt" "$T/hist2.txt" | head >&2 || true; fail "np 1 and np 2 histories differ"; }
cmp -s "$T/hist1.txt" "$T/hist3.txt" || { diff "$T/hist1.txt" "$T/hist3.txt" | head >&2 || true; fail "np 1 and np 3 histories differ"; }

# The histories are not trivially equal: children exist, fitness varies, and with several
# workers more than one rank did the work.
"$PYTHON" - "$T/runs/np1/search.h5" "$T/runs/np3/search.h5" "$T/runs/np3/log.jsonl" <<'EOF'
import json, math, sys
import h5py
import numpy as np

with h5py.File(sys.argv[1], "r") as f:
    h = f["search/history"]
    parents, fit = h["parent"][()], h["fitness"][()]
    assert (parents >= 0).sum() == 14, "expected 14 children, found %d" % (parents >= 0).sum()
    assert len(set(np.round(fit, 9))) >= 3, "fitness barely varies: %s" % fit
    assert all(math.isfinite(x) for x in fit), "non-finite fitness"
    assert len(f["search/inflight/id"]) == 0, "a finished search has candidates in flight"
with h5py.File(sys.argv[2], "r") as f:
    h = f["search/history"]
    ranks = set(int(r) for r in h["rank"][()])
    # Both workers evaluate; with this few workers the master evaluates too while they are busy.
    assert {1, 2} <= ranks <= {0, 1, 2}, "np 3: evaluated by ranks %s, expected {1, 2} (+0)" % ranks
    fit, ids = h["fitness"][()], h["id"][()]
    best = int(np.argmin(fit))
    best_id, alpha, kappa = int(ids[best]), h["alpha"][best], h["kappa"][best]
    assert int(f["search"].attrs["best_id"]) == best_id, "best_id attribute"

done = [json.loads(l) for l in open(sys.argv[3]) if '"search_done"' in l]
assert len(done) == 1, "expected one search_done event, found %d" % len(done)
d = done[0]
assert d["best_id"] == best_id, "search_done best_id %d, history best %d" % (d["best_id"], best_id)
assert abs(d["fitness"] - fit[best]) <= 1e-5 * abs(fit[best]), "search_done fitness"
assert len(d["alpha"]) == 7 and len(d["kappa"]) == 7, "alpha/kappa lengths"
assert np.allclose(d["alpha"], alpha, rtol=1e-8), "search_done alpha differs from the history"
assert np.allclose(d["kappa"], kappa, rtol=1e-8, atol=1e-12), "search_done kappa differs"
print("best candidate %d, fitness %.6f, identical over np 1/2/3" % (best_id, fit[best]))
EOF

# Reuse happened (this small search prunes several children to networks it has seen), each
# reused candidate has its source's fitness, and the run without reuse evaluated every one.
"$PYTHON" - "$T/runs/np3/log.jsonl" "$T/runs/noreuse/log.jsonl" <<'EOF'
import json, sys
def events(path):
    return [json.loads(l) for l in open(path)]
ev = events(sys.argv[1])
cands = {e["id"]: e for e in ev if e["event"] == "candidate"}
reused = [e for e in cands.values() if "reused_from" in e]
assert reused, "no candidate reused a fitness"
for e in reused:
    src = cands[e["reused_from"]]
    assert "reused_from" not in src, "candidate %d reused from a reused one" % e["id"]
    assert e["fitness"] == src["fitness"] and e["flops"] == src["flops"], "candidate %d" % e["id"]
ranks = [e for e in ev if e["event"] == "search_ranks"][0]
assert ranks["reused"] == len(reused), "search_ranks says %d reused, the log %d" % (ranks["reused"], len(reused))
assert sum(ranks["candidates"]) + len(reused) == len(cands), "evaluated + reused != candidates"
off = events(sys.argv[2])
assert not any("reused_from" in e for e in off), "reuse_fitness = false reused a fitness"
print("%d of %d candidates reused an earlier fitness" % (len(reused), len(cands)))
EOF

note "ok"
