#!/usr/bin/env bash
# Re-make every suite committed under results/ (the figures quoted in the issues' closing notes).
#
#   bash benchmarks/tools/acceptance.sh            # all steps, in order (about 25 min on a 2-core CPU)
#   bash benchmarks/tools/acceptance.sh chest      # one step: default cache chest medmnist resnet18 vgg16
#
# Needs `make setup` (.venv) and the offline data beside the project (../shared/data, or
# $TLBENCH_SHARED_DATA). Transfer checkpoints made here go to .cache/checkpoints (git-ignored, never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
TL=.venv/bin/tlbench
PY=.venv/bin/python
DATA=${TLBENCH_SHARED_DATA:-../shared/data}
CKPT=.cache/checkpoints
mkdir -p "$CKPT"

step_default() {  # issue 2: the default suite (what `make bench` runs)
  rm -rf results/default
  $TL run
}

step_cache() {  # issue 3: cold cache build vs warm load of the 5,840-image chest X-ray folder
  $PY -m tlbench.benchmarks.tools.bench_dataset_cache --dataset "folder:$DATA/chest_xray_pneumonia" \
    --image-size 224 --crop-pct 0.875 --interpolation bicubic --rounds 3 | tee results/bench_dataset_cache.md
}

step_chest() {  # issue 3: linear probe of the offline ImageNet Lite0 on the chest X-ray folder (val carved from train)
  rm -rf results/chest_xray_linear_probe
  $TL run --suite chest_xray_linear_probe --dataset "folder:$DATA/chest_xray_pneumonia" \
    --strategies linear_probe --image-size 224 --batch-size 64
}

step_medmnist() {  # issue 3: both MedMNIST files, official splits
  rm -rf results/medmnist_linear_probe
  $TL run --suite medmnist_linear_probe \
    --dataset "medmnist:$DATA/breastmnist.npz,medmnist:$DATA/pneumoniamnist.npz" --strategies linear_probe
}

step_resnet18() {  # issues 4 and 6: a digits-trained resnet18 as the transfer source, timm and torchvision, 2 seeds
  [ -f "$CKPT/resnet18_digits.pth" ] || $PY -m tlbench.benchmarks.tools.make_digits_checkpoint \
    --backend torchvision --model resnet18 --epochs 5 --out "$CKPT/resnet18_digits.pth"
  rm -rf results/resnet18_breastmnist
  $TL run --suite resnet18_breastmnist --backends timm,torchvision --models resnet18 \
    --weights "$CKPT/resnet18_digits.pth" --dataset "medmnist:$DATA/breastmnist.npz" --seeds 0,1
}

step_vgg16() {  # issue 5: the same VGG16 weights in Keras and torchvision; keras and timm side by side on digits
  [ -f "$CKPT/vgg16_digits.pth" ] || $PY -m tlbench.benchmarks.tools.make_digits_checkpoint \
    --backend torchvision --model vgg16 --image-size 32 --epochs 3 --lr 1e-4 --out "$CKPT/vgg16_digits.pth"
  [ -f "$CKPT/vgg16_digits.weights.h5" ] || $PY -m tlbench.backends.keras_port \
    "$CKPT/vgg16_digits.pth" "$CKPT/vgg16_digits.weights.h5"
  rm -rf results/vgg16_breastmnist results/vgg16_digits
  $TL run --suite vgg16_breastmnist --backends keras,torchvision --models vgg16 --image-size 32 \
    --weights "keras=$CKPT/vgg16_digits.weights.h5,torchvision=$CKPT/vgg16_digits.pth" \
    --dataset "medmnist:$DATA/breastmnist.npz"
  $TL run --suite vgg16_digits --backends keras,timm --models vgg16 --image-size 32 --weights none --dataset digits \
    --epochs 2 --max-train-images 256
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(default cache chest medmnist resnet18 vgg16)
for name in "${steps[@]}"; do
  declare -F "step_$name" >/dev/null || { echo "acceptance.sh: unknown step '$name'; expected: default cache chest medmnist resnet18 vgg16" >&2; exit 2; }
  echo "== $name" >&2
  "step_$name"
done
