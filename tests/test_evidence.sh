# tools/evidence.sh end to end on a tiny synthetic job: two seeds from one pretrained base, each
# run (search + family with baselines) under mpirun -np 2, then the comparison; a rerun reuses
# the finished families; the seeds really differ (their searches' histories are not identical)
# while both start from the same base network.
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
search: { population = 4; sample = 2; evaluations = 6; tau = 2; batch = 32; target_flops = 0.5; };
family: { flops = [0.7, 0.4]; epochs = 1; batch = 32; baselines = ["uniform", "random"];
          latency_repeats = 1; };
CFG
run_evidence() {
    RC=0
    ASAN_OPTIONS=$LEGR_ASAN_OPTIONS LEGR_BIN=$LEGR_BIN NP=2 \
        MPIRUN="timeout -k 5 130 $MPIEXEC --oversubscribe --timeout 120 -x ASAN_OPTIONS" \
        bash "$LEGR_SRC/tools/evidence.sh" "$T/ev.cfg" "$T/runs/base/base.h5" 3 4 \
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
note "OK"
