#!/usr/bin/env bash
# Train the sweeps of the collapse-alarm study (issue 14) under runs/alarm-study/.
#
# Calibration sweeps (the alarm's thresholds are chosen on these, then frozen in
# analysis/alarm_params.json):   digits-mlp-class (seeds 0-2), digits-mlp-kmeans (seeds 0-2).
# Held-out sweeps (never read during calibration): other seeds, another
# architecture (CNN, ViT), another partition (a class map), other data (Adult,
# Fashion-MNIST), the random-partition null, shallow sweeps that stop before collapse.
#
# One sweep at a time, each on a local Ray with at most 2 concurrent runs, OMP_NUM_THREADS=1.
# Re-running resumes: the sweep command skips the levels already stored.  Usage:
#   bash scripts/alarm_sweeps.sh            # everything
#   bash scripts/alarm_sweeps.sh NAME ...   # only the named sweeps
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/alarm-study}
mkdir -p "$OUT"

DEEP="--set prune.levels=22"   # 1 - 0.8^22 = 99.3 % sparse: past collapse on digits
# 8x8 digits: the patch side must divide 8; 17.2k prunable weights (the MLP 64-32 has 6.5k)
VIT="--set model.name=vit --set model.patch=4 --set model.dim=32 --set model.depth=2 --set model.heads=2 --set model.mlp_ratio=2"
declare -A SWEEPS=(
  # calibration
  [digits-mlp-class]="--preset smoke --seeds 0 1 2 $DEEP"
  [digits-mlp-kmeans]="--preset smoke --seeds 0 1 2 $DEEP --set data.partition=kmeans --set data.k=4 --set rtl.ticket_kind=expert"
  # held out: other seeds
  [digits-mlp-class-s345]="--preset smoke --seeds 3 4 5 $DEEP"
  # held out: another architecture
  [digits-cnn-class]="--preset smoke --seeds 0 1 2 $DEEP --set model.name=cnn"
  [digits-cnn-kmeans]="--preset smoke --seeds 0 1 2 $DEEP --set model.name=cnn --set data.partition=kmeans --set data.k=4 --set rtl.ticket_kind=expert"
  # held out: sweeps that stop before collapse (6 levels, 73.8 % sparse)
  [digits-mlp-class-shallow]="--preset smoke --seeds 6 7 8 --set prune.levels=6"
  [digits-cnn-kmeans-shallow]="--preset smoke --seeds 6 7 --set prune.levels=6 --set model.name=cnn --set data.partition=kmeans --set data.k=4 --set rtl.ticket_kind=expert"
  # held out: the random-partition null (random subsets of the class sizes, same theta_0)
  [digits-mlp-random]="--preset smoke --seeds 0 1 2 $DEEP --set data.partition=random --set data.null_of=class"
  # held out: a class-map partition (digits4: the ten digits grouped by stroke shape into 4 clusters;
  # expert tickets, as for k-means: detectors stand for one class each)
  [digits-mlp-map]="--preset smoke --seeds 0 1 2 $DEEP --set data.partition=map --set data.partition_map=digits4 --set rtl.ticket_kind=expert"
  # held out: a transformer (ViT on 2x2 patches of 4x4 pixels, width 32, 2 blocks of 2 heads)
  [digits-vit-class]="--preset smoke --seeds 0 1 2 $DEEP $VIT"
  # held out: other data
  [adult-mlp-kmeans]="--preset adult-mlp-cluster --seeds 0 1 --set prune.levels=20 --set train.epochs=1 --set rtl.retrain_epochs=1"
  [fashion-mlp-class]="--preset fashion-mlp-class --seeds 0 1 --set prune.levels=20 --set data.limit=6000 --set data.eval_limit=2000 --set model.hidden=100,30"
)
ORDER=(digits-mlp-class digits-mlp-kmeans digits-mlp-class-s345 digits-cnn-class digits-mlp-class-shallow
       adult-mlp-kmeans digits-cnn-kmeans-shallow digits-mlp-random digits-cnn-kmeans fashion-mlp-class
       digits-mlp-map digits-vit-class)
if [ "$#" -gt 0 ]; then ORDER=("$@"); fi

for name in "${ORDER[@]}"; do
  args=${SWEEPS[$name]:?unknown sweep $name}
  echo "== $name: python -m lottery sweep $args"
  start=$(date +%s)
  # shellcheck disable=SC2086
  $PY -m lottery sweep $args --cpus-per-run 1 --out "$OUT/$name" --quiet
  echo "== $name done in $(( $(date +%s) - start )) s"
done
