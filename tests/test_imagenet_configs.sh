# The ImageNet and CUB-200 configs: `legr-mpi --dry-run` works without their data files (a
# warning, exit 0) and prints the networks' exact MAC and parameter counts (torchvision's
# ResNet-50 at 1000 and 200 classes, MobileNetV2 at 1000), and the resolved config names the run
# directory the jobs/ scripts read from it.
source "$(dirname "$0")/lib.sh"

check_dry() {
    local cfg=$1 macs=$2 params=$3 classes=$4 name
    name=$(basename "$cfg" .cfg)
    legr_run 120 "$T/$name" --dry-run "$LEGR_SRC/configs/$cfg"
    expect_rc 0 "$T/$name" "--dry-run $cfg"
    expect_grep "FLOPs (multiply-accumulates of conv + fc): $macs " "$T/$name.out" "$cfg: MACs"
    expect_grep "; parameters: $params" "$T/$name.out" "$cfg: parameters"
    expect_grep "cannot open: No such file or directory; assuming 3x224x224 inputs and $classes classes" \
        "$T/$name.out" "$cfg: warning about the missing data file"
    expect_grep "  name = \"$name\";" "$T/$name.out" "$cfg: run.name in the resolved config"
    expect_grep "  dataset = \"hdf5\";" "$T/$name.out" "$cfg: reads a legr-images file"
    note "$cfg: $macs MACs, $params parameters"
}
check_dry resnet50-imagenet.cfg 4089184256 25557032 1000
# The CUB-200 config differs from the ImageNet one only in its data and classifier; the sanitizer
# build, where a ResNet-50 step takes half a minute, leaves it to the optimised build.
((SANITIZED)) || check_dry resnet50-cub200.cfg 4087545856 23917832 200
check_dry mobilenetv2-imagenet.cfg 300774272 3504872 1000
note "ok"
