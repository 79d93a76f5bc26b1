# The train/validation split of a job that loads a base network this program pretrained: with
# data.split_seed = -1 (the default) it is the base's own split whatever run.seed, so the search
# validates on images the base never trained on; data.split_seed pins it explicitly, and one that
# overlaps the base's training images is warned about. Observed through the search's fitness on
# real Fashion-MNIST images (a different split gives different validation images).
source "$(dirname "$0")/lib.sh"

data=/usr/share/datasets/fashion-mnist
[[ -r $data/train-images-idx3-ubyte.gz || -r $data/train-images-idx3-ubyte ]] ||
    fail "no Fashion-MNIST in $data (tools/install-deps.sh installs dataset-fashion-mnist)"
DATA="data: { dataset = \"fashion-mnist\"; dir = \"$data\"; train_limit = 600; test_limit = 100; augment = false; };"
RUN_BASE="run: { name = \"base\"; seed = 3; out_dir = \"$T/runs\"; log_every = 100; };"

RUN_GROUP=$RUN_BASE DATA_GROUP=$DATA write_cfg "$T/base.cfg" base 'pretrain: { epochs = 1; batch = 32; };
search: { enabled = false; };
family: { enabled = false; };'
legr_run 120 "$T/base" "$T/base.cfg"
expect_rc 0 "$T/base" "pretraining the base (seed 3)"

# job NAME SPLIT_SEED [VAL_FRACTION]: run.seed 4, the search only, deterministic.
job() {
    local name=$1 split=$2 frac=${3:-0.1}
    RUN_GROUP="run: { name = \"$name\"; seed = 4; out_dir = \"$T/runs\"; log_every = 100; };" \
    DATA_GROUP="${DATA/augment = false;/augment = false; split_seed = $split; val_fraction = $frac;}" \
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/$name.cfg" "$name" 'search: { population = 3; sample = 2; evaluations = 3; tau = 2;
  batch = 16; val_limit = 60; mode = "deterministic"; };
family: { enabled = false; };'
    legr_run 120 "$T/$name" "$T/$name.cfg"
    expect_rc 0 "$T/$name" "job $name"
}
fitness() { grep -o '"fitness":[-0-9.e]*' "$T/runs/$1/log.jsonl" | head -3 | tr '\n' ' '; }

job default -1
expect_grep "train/validation split of seed 3, the one model.init" "$T/default.err" \
    "the default adopts the base's split"
job pinned 3
grep -q "^data: .*split" "$T/pinned.err" && fail "an explicit split_seed equal to the base's needs no note"
[[ "$(fitness default)" == "$(fitness pinned)" ]] ||
    fail "split_seed -1 and 3 should validate on the same images: $(fitness default) vs $(fitness pinned)"
job own 4
expect_grep "warning: data.split_seed = 4, but model.init" "$T/own.err" "the overlap is warned about"
expect_grep "set data.split_seed = 3" "$T/own.err" "the warning names the fix"
[[ "$(fitness own)" != "$(fitness default)" ]] ||
    fail "another split should give other validation images and fitness: $(fitness own)"
# Another validation fraction is another split altogether: nothing adopted, nothing to say.
job frac -1 0.2
grep -q "^data: .*split" "$T/frac.err" && fail "val_fraction differs from the base's: no split adopted"
note "ok: $(fitness default)| $(fitness own)"
