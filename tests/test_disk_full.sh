# Output faults: a run directory that cannot be written stops the job before any work; a disk
# that fills up while pretrain.h5, base.h5, search.h5 or family.h5 is written stops it with exit
# code 5 and a message naming the file and "No space left on device", leaves every file already
# there byte for byte as it was and no temporary file, and does not crash on the way out (HDF5
# once died with SIGSEGV at exit after a failed write); a file-size limit is reported the same
# way. The full disk is a small tmpfs as run.out_dir, so that part needs root (mount); without
# it ctest reports the test as skipped (77) after the file-size part.
source "$(dirname "$0")/lib.sh"

# A file-size limit (ulimit -f; 8 MiB, which Open MPI's start-up still fits in): a wide ResNet-8
# has a 10 MB pretrain.h5, whose write then fails with EFBIG (legr-mpi ignores SIGXFSZ, which
# would otherwise kill it) and is reported like a full disk.
MODEL_GROUP="model: { depth = 8; width = 4.0; };" write_cfg "$T/wide.cfg" wide "pretrain: { epochs = 1; batch = 16; };
search: { enabled = false; };
family: { enabled = false; };"
(ulimit -f 8192 && legr_run 120 "$T/wide" "$T/wide.cfg" && exit "$RC") || RC=$?
expect_rc 5 "$T/wide" "pretrain.h5 over a file-size limit"
expect_grep "$T/runs/wide/pretrain.h5.tmp" "$T/wide.err" "file-size limit: the file named"
expect_grep "File too large" "$T/wide.err" "file-size limit: the reason"
note "file-size limit: $(grep -m1 'cannot write' "$T/wide.err")"

DISK=$T/disk
mkdir -p "$DISK"
if ! mount -t tmpfs -o size=4m tmpfs "$DISK" 2>"$T/mount.err"; then
    note "skipped: cannot mount a tmpfs here (root is needed): $(cat "$T/mount.err")"
    exit 77
fi
trap 'rc=$?; umount "$DISK" 2>/dev/null || true; (exit $rc); cleanup_tmp' EXIT
RUN=$DISK/x

# cfg NAME GROUPS: a job writing to $DISK/x (every stage's files in the one run directory).
cfg() {
    RUN_GROUP="run: { name = \"x\"; seed = 5; out_dir = \"$DISK\"; log_every = 1; };" \
        write_cfg "$T/$1.cfg" x "$2"
}
SEARCH='search: { population = 4; sample = 2; evaluations = 8; tau = 2; batch = 8; val_limit = 16;
  checkpoint_every = 2; };'
cfg full "pretrain: { epochs = 1; batch = 16; };
$SEARCH
family: { flops = [0.5]; epochs = 0; };"
legr_run 120 "$T/full" "$T/full.cfg"
expect_rc 0 "$T/full" "the whole job with room on the disk"
for f in pretrain base search family; do
    [[ -s $RUN/$f.h5 ]] || fail "the whole job wrote no $f.h5"
done
cp "$RUN/base.h5" "$T/base.h5"
(cd "$RUN" && md5sum ./*.h5) >"$T/before.md5"

# Fill the disk to the last block.
dd if=/dev/zero of="$DISK/filler" bs=4k >/dev/null 2>&1 || true
[[ $(df --output=avail -k "$DISK" | tail -n 1) -lt 8 ]] || fail "the tmpfs is not full"

# full_disk_stage NAME FILE GROUPS: the stage that writes FILE first fails on the full disk.
full_disk_stage() {
    local name=$1 file=$2 groups=$3
    cfg "$name" "$groups"
    legr_run 120 "$T/$name" "$T/$name.cfg"
    expect_rc 5 "$T/$name" "$file on a full disk"
    expect_grep "$RUN/$file: cannot write $RUN/$file.tmp" "$T/$name.err" "$file: the file named"
    expect_grep "No space left on device; $RUN/$file is unchanged" "$T/$name.err" "$file: the reason"
    if grep -q "Segmentation\|Signal\|signal" "$T/$name.err"; then
        show_run "$T/$name"
        fail "$file: the process crashed after the failed write"
    fi
    (cd "$RUN" && md5sum --quiet -c "$T/before.md5") >"$T/$name.md5" 2>&1 ||
        { cat "$T/$name.md5" >&2; fail "$file: a file of the earlier run changed"; }
    [[ -z $(find "$RUN" -name '*.tmp') ]] || fail "$file: a temporary file was left: $(ls "$RUN")"
    note "$file: $(grep -m1 'cannot write' "$T/$name.err")"
}
full_disk_stage pretrain pretrain.h5 "pretrain: { epochs = 1; batch = 16; };
search: { enabled = false; };
family: { enabled = false; };"
full_disk_stage base base.h5 "pretrain: { epochs = 0; };
search: { enabled = false; };
family: { enabled = false; };"
MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/base.h5\"; };" \
    full_disk_stage search search.h5 "$SEARCH
family: { enabled = false; };"
MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/base.h5\"; };" \
    full_disk_stage family family.h5 "search: { enabled = false; };
family: { flops = [0.5]; epochs = 0; ranking = \"identity\"; };"

# Room again: the files left are complete, the interrupted stage runs to its end.
rm "$DISK/filler"
MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/base.h5\"; };" \
    cfg again "search: { enabled = false; };
family: { flops = [0.5]; epochs = 0; ranking = \"identity\"; };"
legr_run 120 "$T/again" "$T/again.cfg"
expect_rc 0 "$T/again" "the family stage once there is room"

# A run directory that cannot be created or written fails before any work, with exit code 5.
touch "$T/plainfile"
RUN_GROUP="run: { name = \"x\"; out_dir = \"$T/plainfile/runs\"; };" \
    write_cfg "$T/notdir.cfg" x "pretrain: { epochs = 1; batch = 16; };"
legr_run 60 "$T/notdir" "$T/notdir.cfg"
expect_rc 5 "$T/notdir" "out_dir below a plain file"
expect_grep "run.out_dir: cannot create directory $T/plainfile/runs: Not a directory" \
    "$T/notdir.err" "out_dir below a plain file: message"
mount -o remount,ro "$DISK"
cfg readonly "pretrain: { epochs = 1; batch = 16; };"
legr_run 60 "$T/readonly" "$T/readonly.cfg"
expect_rc 5 "$T/readonly" "read-only out_dir"
expect_grep "run.out_dir: cannot write $RUN/log.jsonl: Read-only file system" "$T/readonly.err" \
    "read-only out_dir: message"
for r in notdir readonly; do
    if grep -q "pretrain: epoch" "$T/$r.err"; then fail "$r: training started"; fi
done
note "ok"
