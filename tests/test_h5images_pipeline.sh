# A generated image folder (300 PNG and JPEG images of random sizes, 3 classes, some greyscale)
# converted by tools/images_to_h5.py both ways (--size 32 pixels and --keep-jpeg bytes) runs the
# whole job (pretraining, search, family) through the crop path (RandomResizedCrop 24 + flip in
# training, Resize 27 + CenterCrop 24 in evaluation) at -np 2 and 3; both rank counts see the
# same first batch (its loss agrees to rounding), since order and augmentation depend on the step
# and the image alone.
source "$(dirname "$0")/lib.sh"

"$PYTHON" "$LEGR_SRC/tests/make_image_tree.py" "$T/tree" --count 300 --seed 5
for mode in "--size 32" "--keep-jpeg"; do
    out=$T/${mode#--}.h5
    out=${out// /}
    "$PYTHON" "$LEGR_SRC/tools/images_to_h5.py" "$T/tree" -o "$out" $mode --seed 2 \
        >"$out.log" 2>&1 || fail "images_to_h5.py $mode: $(tail -3 "$out.log")"
done

# first_loss LOG: the loss of the first pretraining step in a log.jsonl.
first_loss() {
    "$PYTHON" -c 'import json, sys
print([e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "train_step"][0]["loss"])' "$1"
}

for file in size32 keep-jpeg; do
    for np in 2 3; do
        name=$file-np$np
        DATA_GROUP="data: { dataset = \"hdf5\"; file = \"$T/$file.h5\"; crop = 24; val_fraction = 0.2; cache_mb = 1; };" \
            write_cfg "$T/$name.cfg" "$name" 'pretrain: { epochs = 1; batch = 24; };
search: { evaluations = 4; population = 2; sample = 1; tau = 2; batch = 16; target_flops = 0.5; val_limit = 32; };
family: { flops = [0.5]; epochs = 1; batch = 16; latency_repeats = 1; };'
        legr_mpirun "$np" 120 "$T/$name" "$T/$name.cfg"
        expect_rc 0 "$T/$name" "$file at -np $np"
        test -s "$T/runs/$name/family.h5" || fail "$file at -np $np: no family.h5"
        expect_grep "of 3x24x24" "$T/$name.err" "$file: the network takes 24x24 crops"
        expect_grep "training RandomResizedCrop + flip, evaluation Resize 27 + CenterCrop 24" \
            "$T/$name.err" "$file: the transforms"
    done
    a=$(first_loss "$T/runs/$file-np2/log.jsonl") b=$(first_loss "$T/runs/$file-np3/log.jsonl")
    note "$file: first step loss $a at -np 2, $b at -np 3"
    "$PYTHON" -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-5 * abs(a))' \
        "$a" "$b" || fail "$file: the first batch differs between 2 and 3 ranks ($a, $b)"
done
note "ok"
