# The whole pipeline (load base, search, family) with -np 2 and -np 1 writes family.h5 whose
# levels meet their FLOPs targets, hold kept indices consistent with the stored tensors, and
# have the same metrics whichever rank fine-tuned them.
source "$(dirname "$0")/lib.sh"

pretrain_base 2 32

# Two LeGR levels and the uniform baseline at the same levels: 4 level jobs, dealt over the ranks.
for np in 2 1; do
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/np$np.cfg" "np$np" 'search: { population = 4; sample = 2; evaluations = 8; tau = 2; batch = 16;
  val_limit = 32; mode = "deterministic"; sync_batch = 4; };
family: { flops = [0.7, 0.4]; epochs = 1; batch = 32; baselines = ["uniform"]; latency_repeats = 2; };'
    legr_mpirun "$np" 120 "$T/np$np" "$T/np$np.cfg"
    expect_rc 0 "$T/np$np" "pipeline -np $np"
    test -f "$T/runs/np$np/family.h5" || fail "-np $np wrote no family.h5"
done
expect_grep "top1" "$T/np2.err" "the family table is printed"

"$PYTHON" - "$T/runs/np2" "$T/runs/np1" <<'EOF'
import json, sys
import h5py
import numpy as np

def text(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)

def check_file(run):
    out = {}
    log = [json.loads(l) for l in open(run + "/log.jsonl")]
    base_flops = [e for e in log if e.get("event") == "base"][0]["flops"]
    done = [e for e in log if e.get("event") == "search_done"][0]
    with h5py.File(run + "/family.h5", "r") as f:
        assert text(f.attrs["format"]) == "legr-family", "format"
        assert int(f["base"].attrs["flops"]) == base_flops, "base flops"
        assert np.allclose(f["search/alpha"][()], done["alpha"]), "alpha differs from the log"
        levels = sorted(f["levels"])
        assert len(levels) == 4 == int(f.attrs["n_levels"]), "levels %s" % levels
        base = f["base/params"]
        for name in levels:
            lv = f["levels/" + name]
            a = lv.attrs
            method, target = text(a["method"]), float(a["target"])
            key = (method, round(target, 6))
            assert key not in out, "duplicate level " + str(key)
            flops = int(a["flops"])
            assert 0 < flops <= target * base_flops, "%s: %d FLOPs > %g x %d" % (key, flops, target, base_flops)
            for k in ("test_top1", "test_top1_before"):
                assert 0.0 <= float(a[k]) <= 1.0, "%s: %s = %s" % (key, k, a[k])
            assert np.isfinite(float(a["test_loss"])), "test_loss"
            assert int(a["params"]) == sum(lv["params"][t].size for t in lv["params"]), "params attr"
            # Kept indices: ascending original filter numbers, one per stored output channel.
            for conv in lv["kept"]:
                kept = lv["kept"][conv][()]
                w = lv["params"][conv + ".weight"]
                c_base = base[conv + ".weight"].shape[0]
                assert len(kept) == w.shape[0], "%s %s: %d kept, weight has %d filters" % (key, conv, len(kept), w.shape[0])
                assert len(kept) >= 1 and np.all(np.diff(kept) > 0), "%s %s: kept not ascending" % (key, conv)
                assert kept[0] >= 0 and kept[-1] < c_base, "%s %s: kept out of range" % (key, conv)
                bn = conv.replace("conv", "bn")
                if bn + ".weight" in lv["params"]:
                    assert lv["params"][bn + ".weight"].shape == (len(kept),), key + " " + bn
            # Inside a block, conv2 reads what conv1 kept.
            for blk in ("layer1.0", "layer2.0", "layer3.0"):
                n1 = len(lv["kept"][blk + ".conv1"])
                assert lv["params"][blk + ".conv2.weight"].shape[1] == n1, key + " " + blk
            assert flops < base_flops, "a level is not pruned"
            out[key] = (float(a["test_top1"]), float(a["test_loss"]), flops,
                        {c: lv["kept"][c][()].tolist() for c in lv["kept"]})
    return out

a, b = check_file(sys.argv[1]), check_file(sys.argv[2])
assert sorted(a) == sorted(b), "levels differ: %s vs %s" % (sorted(a), sorted(b))
for k in sorted(a):
    ta, la, fa, ka = a[k]
    tb, lb, fb, kb = b[k]
    assert fa == fb and ka == kb, "%s: pruned networks differ between np 2 and np 1" % (k,)
    assert ta == tb, "%s: test top-1 %.6f (np 2) vs %.6f (np 1)" % (k, ta, tb)
    assert abs(la - lb) <= 1e-9 * abs(lb), "%s: test loss %r vs %r" % (k, la, lb)
    print("%-8s %3.0f%%  %6d FLOPs  top-1 %.4f  (same with np 2 and np 1)" % (k[0], 100 * k[1], fa, ta))
EOF

note "ok"
