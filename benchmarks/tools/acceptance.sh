#!/usr/bin/env bash
# Re-make every suite committed under results/ (the figures quoted in the issues' closing notes).
#
#   bash benchmarks/tools/acceptance.sh            # all steps, in order (about 3 h on a 2-core CPU)
#   bash benchmarks/tools/acceptance.sh chest      # one step (see `steps` at the bottom)
#
# Run it on a quiet machine: every cell records what other processes used of the cores while it was timed,
# and the reports flag disturbed cells.
#
# Each suite step runs the suite file of its results folder (suites/<folder>.toml: the matrix and options, the one
# source of the committed figures; `tlbench run suites/<folder>.toml` re-makes one by hand). Needs `make setup`
# (.venv) and the offline data at ../shared/data (the path the suite files name; the benchmark tools also take
# $TLBENCH_SHARED_DATA). Transfer checkpoints made here go to .cache/checkpoints (git-ignored, never committed).
set -euo pipefail
cd "$(dirname "$0")/../.."
TL=.venv/bin/tlbench
PY=.venv/bin/python
DATA=${TLBENCH_SHARED_DATA:-../shared/data}
CKPT=.cache/checkpoints
mkdir -p "$CKPT"
# the tuned runtime of cell processes (threads, allocator) for the tools that time in their own process
TUNED_ENV=$($PY -c "from tlbench.benchmarks.running.config import RunOptions; from tlbench.benchmarks.running.runtime import runtime_settings; print(' '.join(f'{k}={v}' for k, v in runtime_settings(RunOptions()).env.items()))")

step_default() {  # issue 2: the default suite (what `make bench` runs), each cell waiting up to 60 s for a quiet machine
  rm -rf results/default
  $TL run suites/default.toml
}

step_after_training() {  # speed issue: why the inference pass: inference right after training vs in a fresh process
  $PY -m tlbench.benchmarks.tools.bench_after_training --rounds 5 --image-size 64 --batch-size 32 --train-s 20 \
    --infer-s 4 --out results/bench_after_training.md
}

step_cache() {  # issue 3: cold cache build vs warm load of the 5,840-image chest X-ray folder
  $PY -m tlbench.benchmarks.tools.bench_dataset_cache --dataset "folder:$DATA/chest_xray_pneumonia" \
    --image-size 224 --crop-pct 0.875 --interpolation bicubic --rounds 3 | tee results/bench_dataset_cache.md
}

step_chest() {  # issue 3: linear probe of the offline ImageNet Lite0 on the chest X-ray folder (val carved from train);
  # inference timed on the trained model compiled with inductor freezing (speed issue: MFU >= 40 %)
  rm -rf results/chest_xray_linear_probe
  $TL run suites/chest_xray_linear_probe.toml
}

step_medmnist() {  # issue 3: both MedMNIST files, official splits
  rm -rf results/medmnist_linear_probe
  $TL run suites/medmnist_linear_probe.toml
}

step_resnet18() {  # issues 4 and 6: a digits-trained resnet18 as the transfer source, timm and torchvision, 2 seeds
  [ -f "$CKPT/resnet18_digits.pth" ] || $PY -m tlbench.benchmarks.tools.make_digits_checkpoint \
    --backend torchvision --model resnet18 --epochs 5 --out "$CKPT/resnet18_digits.pth"
  rm -rf results/resnet18_breastmnist
  $TL run suites/resnet18_breastmnist.toml
}

step_watch() {  # issue 21: what the watch process costs the watched work (unwatched vs watched vs the old in-thread watch)
  $PY -m tlbench.benchmarks.tools.bench_watch --rounds 5 --image-size 64 --batch-size 32 --infer-s 6 \
    --out results/bench_watch.md
}

step_canary() {  # issue 21: the speed canary around each training engine's timed part vs the probe's canary
  $PY -m tlbench.benchmarks.tools.bench_canary --rounds 5 --train-s 4 --out results/bench_canary.md
}

step_group_leakage() {  # issue 22: patients in two splits of the chest X-ray folder, carved per image vs by patient
  $PY -m tlbench.benchmarks.tools.bench_group_leakage --out results/bench_group_leakage.md
}

step_overhead() {  # speed issue: suite cell vs a bare hand-written loop per backend (224 px, float32, CPU)
  $PY -m tlbench.benchmarks.tools.bench_overhead --rounds 2 --image-size 224 --batch-size 16 --steps 6 \
    --out results/bench_overhead.md
}

step_infer_compile() {  # speed issue: eager vs the trained model compiled with inductor freezing, Lite0 224 px, MFU
  env $TUNED_ENV $PY -m tlbench.benchmarks.tools.bench_torchvision_options --backend timm --model tf_efficientnet_lite0 \
    --image-size 224 --batch-size 64 --variants fp32,channels_last,infer_compile,channels_last+infer_compile \
    --rounds 3 --train-steps 2 --mfu | tee results/bench_infer_compile.md
}

step_memory_format() {  # speed issue: channels-last vs contiguous through the Backend contract, per torch backend
  env $TUNED_ENV $PY -m tlbench.benchmarks.tools.bench_torchvision_options --backend timm --model tf_efficientnet_lite0 \
    --image-size 224 --batch-size 16 --variants fp32,channels_last --rounds 3 | tee results/bench_memory_format.md
  env $TUNED_ENV $PY -m tlbench.benchmarks.tools.bench_torchvision_options --backend torchvision --model resnet18 \
    --image-size 224 --batch-size 16 --variants fp32,channels_last --rounds 3 | tee -a results/bench_memory_format.md
}

step_strategies() {  # strategies issue: which strategy wins, at what cost: Lite0 (offline ImageNet), 3 seeds, 64 px
  rm -rf results/strategies_breastmnist
  $TL run suites/strategies_breastmnist.toml
}

step_strategies_more() {  # the same matrix on digits and the chest X-ray folder (about 45 min on 2 cores)
  rm -rf results/strategies_digits results/strategies_chest_xray
  $TL run suites/strategies_digits.toml
  $TL run suites/strategies_chest_xray.toml
}

step_sweep() {  # strategies issue: the frozen-layer sweep (accuracy vs trainable stages) and fusion of two backbones
  rm -rf results/sweep_breastmnist results/fusion_breastmnist
  $TL run suites/sweep_breastmnist.toml
  $TL run suites/fusion_breastmnist.toml
}

step_frameworks() {  # issues 23-24: vgg16-hed trunk + FCN head on five engines (Keras on TF/JAX/torch, torchvision, timm), 3 seeds
  rm -rf results/frameworks_vgg16_breastmnist results/frameworks_vgg16_chest_xray
  $TL run suites/frameworks_vgg16_breastmnist.toml
  $TL run suites/frameworks_vgg16_chest_xray.toml
}

step_deploy() {  # issue 24: the Lite0 chest X-ray probe exported to ONNX Runtime and OpenVINO, fp32 and INT8 (about 10 min)
  rm -rf results/deploy_chest_xray
  $TL run suites/deploy_chest_xray.toml
}

step_deploy_targets() {  # issue 24: speed targets of every inference engine on one trained Lite0, 224 px (about 15 min)
  env $TUNED_ENV $PY -m tlbench.benchmarks.tools.bench_deploy_targets --dataset "folder:$DATA/chest_xray_pneumonia" \
    --out results/bench_deploy_targets.md
}

step_distill() {  # strategies issue: a Lite2 teacher (layer_decay, weights kept in .cache/teachers, never committed)
  # distilled into Lite0 at T=4 (seed 003), beside Lite0 full fine-tuning in the same suite, 3 seeds
  # (distill_breastmnist.toml names the teacher's cell directory)
  rm -rf .cache/teachers/teacher_breastmnist results/distill_breastmnist
  TLBENCH_SAVE_WEIGHTS=1 $TL run suites/teacher_breastmnist.toml --out .cache/teachers/teacher_breastmnist
  $TL run suites/distill_breastmnist.toml
}

step_incremental() {  # issue 23: labels that arrive in 4 chunks, continue vs retrain vs shrink-and-perturb, Lite0
  # linear probe and full fine-tuning, 3 seeds, 64 px (about 10 + 45 + 50 min on 2 cores; BreastMNIST shrinks toward
  # zero as Ash & Adams do, PneumoniaMNIST and the chest folder toward the pretrained weights)
  rm -rf results/incremental_breastmnist results/incremental_pneumoniamnist results/incremental_chest_xray
  $TL run suites/incremental_breastmnist.toml
  $TL run suites/incremental_pneumoniamnist.toml
  $TL run suites/incremental_chest_xray.toml
}

step_label_efficiency() {  # issue 23: with N labels, which strategy: Lite0 probes and fine-tunings on nested stratified
  # subsets, 3 seeds, 64 px (BreastMNIST about 35 min, PneumoniaMNIST about 50, chest X-ray grouped about 60)
  rm -rf results/label_efficiency_breastmnist results/label_efficiency_pneumoniamnist results/label_efficiency_chest_xray
  $TL run suites/label_efficiency_breastmnist.toml
  $TL run suites/label_efficiency_pneumoniamnist.toml
  $TL run suites/label_efficiency_chest_xray.toml
}

step_race() {  # issue 22: the fair race, each dataset untuned then tuned (same recipe, --tune), 3 seeds, 64 px
  # (measured: 17 + 41 min on BreastMNIST, 18 + 53 on the chest X-ray folder grouped by patient; digits estimated
  # 22 + 57);
  # bench_tuning_cost times the BreastMNIST pair in fresh processes and writes the cost ratio
  rm -rf results/untuned_breastmnist results/tuned_breastmnist results/untuned_digits results/tuned_digits \
    results/untuned_chest_xray results/tuned_chest_xray
  $PY -m tlbench.benchmarks.tools.bench_tuning_cost --untuned suites/untuned_breastmnist.toml \
    --tuned suites/tuned_breastmnist.toml --work-dir results/_cost --out results/bench_tuning_cost.md
  rm -rf results/_cost/untuned/cache results/_cost/tuned/cache  # each arm's own decoded images and features
  mv results/_cost/untuned results/untuned_breastmnist && mv results/_cost/tuned results/tuned_breastmnist && rmdir results/_cost
  $TL run suites/untuned_digits.toml
  $TL run suites/tuned_digits.toml
  $TL run suites/untuned_chest_xray.toml
  $TL run suites/tuned_chest_xray.toml
}

ALL_STEPS="default after_training watch canary group_leakage overhead memory_format infer_compile cache chest medmnist resnet18 strategies frameworks deploy deploy_targets sweep distill strategies_more incremental label_efficiency race"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || read -r -a steps <<< "$ALL_STEPS"
for name in "${steps[@]}"; do
  declare -F "step_$name" >/dev/null || { echo "acceptance.sh: unknown step '$name'; expected one of: $ALL_STEPS" >&2; exit 2; }
  echo "== $name" >&2
  "step_$name"
done
