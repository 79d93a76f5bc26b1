# tools/evidence.sh end to end on a tiny synthetic job: two seeds from one pretrained base, each
# run (search + family with baselines) under mpirun -np 2, then the comparison; a rerun reuses
# the finished families; the seeds really differ (their searches' histories are not identical)
# while both start from the same base network; then a variant of the search (--name, --set,
# --baselines-from) summarised against the first run's baselines, and the variant options'
# refusals.
source "$(dirname "$0")/lib.sh"
pretrain_base 2 32
cat >"$T/ev.cfg" <<CFG
run: {
  name = "ev";
  seed = 1;
  out_dir = "$T/runs";
  log_every = 100;
};
data: { dataset = "synthetic"; synthetic_n = 192; synthetic_size = 8; val_fraction = 0.25; };
model: {
  depth = 8;
  width = 0.5;
  init = "";
};
search: { population = 4; sample = 2; evaluations = 6; tau = 2; batch = 32;
  target_flops = 0.5;
};
family: { flops = [0.7, 0.4]; epochs = 1; batch = 32; latency_repeats = 1;
  baselines = ["uniform", "random"];
};
CFG
run_evidence() { # [OPTION...]
    RC=0
    ASAN_OPTIONS=$LEGR_ASAN_OPTIONS LEGR_BIN=$LEGR_BIN NP=2 \
        MPIRUN="timeout -k 5 130 $MPIEXEC --oversubscribe --timeout 120 -x ASAN_OPTIONS" \
        bash "$LEGR_SRC/tools/evidence.sh" "$@" "$T/ev.cfg" "$T/runs/base/base.h5" 3 4 \
        >"$T/ev.out" 2>"$T/ev.err" || RC=$?
}
run_evidence
expect_rc 0 "$T/ev" "evidence.sh"
for s in 3 4; do
    test -s "$T/runs/ev-seed$s/family.h5" || fail "no family for seed $s"
    expect_grep "seed = $s;" "$T/runs/ev-seed$s/job.cfg" "the derived config of seed $s"
    expect_grep "init = \"$T/runs/base/base.h5\";" "$T/runs/ev-seed$s/job.cfg" "the base of seed $s"
done
expect_grep "over 2 file(s)" "$T/ev.out" "the summary"
expect_grep "channels kept per pruned conv" "$T/ev.out" "the --widths tables of the summary"
expect_grep "| legr - random (wins) | legr - uniform (wins) |" "$T/ev.out" "the paired table"
test -s "$T/runs/ev-evidence.md" && test -s "$T/runs/ev-evidence.png" || fail "no summary files"
cmp -s <(h5_history "$T/runs/ev-seed3/search.h5") <(h5_history "$T/runs/ev-seed4/search.h5") &&
    fail "seeds 3 and 4 searched identically"
# Restarted: the finished seeds are not run again.
run_evidence
expect_rc 0 "$T/ev" "evidence.sh rerun"
[[ $(grep -c "exists, not run again" "$T/ev.err") -eq 2 ]] || fail "a finished seed ran again"

# A variant of the search: its own runs, two search targets, LeGR levels only, and each seed's
# baselines taken from the run above.
run_evidence --name evv --set 'search.target_flops=[0.6, 0.4]' --set 'family.baselines=[]' \
    --baselines-from ev
expect_rc 0 "$T/ev" "evidence.sh for a variant"
for s in 3 4; do
    expect_grep "target_flops = [0.6, 0.4];" "$T/runs/evv-seed$s/job.cfg" "the variant's targets"
    expect_grep "name = \"evv-seed$s\";" "$T/runs/evv-seed$s/job.cfg" "the variant's run name"
done
expect_grep "at 60%, 40% FLOPs (fitness: the mean over them)" "$T/ev.err" "the variant's search"
expect_grep "| legr - random (wins) | legr - uniform (wins) |" "$T/ev.out" "the variant's paired table"
test -s "$T/runs/evv-evidence.md" || fail "no summary of the variant"
"$PYTHON" - "$T/runs/evv-seed3/family.h5" <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    methods = {f["levels"][k].attrs["method"] for k in f["levels"]}
    assert methods in ({b"legr"}, {"legr"}), "the variant fine-tuned %s" % methods
EOF
refuse() { # MESSAGE OPTION...
    local msg=$1
    shift
    run_evidence "$@"
    expect_rc 2 "$T/ev" "evidence.sh $*"
    expect_grep "$msg" "$T/ev.err" "the refusal of $*"
}
refuse "no line of its own sets search.nokey" --name evx --set search.nokey=1
refuse "--baselines-from: $T/runs/nosuchrun-seed3/family.h5 does not exist" --name evx \
    --baselines-from nosuchrun
refuse "--set 'bad' is not GROUP.KEY=VALUE" --name evx --set bad
refuse "--set run.seed: evidence.sh sets that key itself" --name evx --set run.seed=9
refuse "give the variant its own runs with --name" --set search.target_flops=0.3
# The variant's name again with another change: its finished runs are not this config's.
refuse "evv-seed3/job.cfg holds another config" --name evv --set 'search.target_flops=[0.5, 0.3]' \
    --set 'family.baselines=[]' --baselines-from ev
[[ ! -e $T/runs/evx-seed3 ]] || fail "a refused call created a run directory"
note "OK"
