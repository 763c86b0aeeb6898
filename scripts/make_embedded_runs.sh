#!/usr/bin/env bash
# Regenerate the embedded default runs under artifacts/ and record the wall time of each.
#
#   scripts/make_embedded_runs.sh                            # all of them, one after the other
#   scripts/make_embedded_runs.sh fashion-mlp-class-sweep    # just one
#   FRESH=1 scripts/make_embedded_runs.sh                    # delete the run folders first
#   TIMINGS=notes/embedded_runs.md scripts/make_embedded_runs.sh   # also append the timings there
#   LANES=2 scripts/make_embedded_runs.sh                    # two lanes side by side, one core each
#
# LANES=N splits the names into N lanes of about equal work (benchmarks/regeneration_lanes.py:
# longest first, from the CPU seconds the runs' level.json files recorded last time), runs the
# lanes side by side and each lane's names one after the other, every sweep in a local Ray of
# one CPU (--local-cpus 1). Without it each group's sweep takes every core, and a group's last
# tasks leave cores idle before the next group starts.
#
# The run groups of issue 12 (NAME-sweep: 3 seeds; NAME-sweep-null: its random-partition
# control, 3 seeds; fashion-mlp-class-sweep-count: overlap scaling "count", 1 seed) are
# `python -m lottery sweep --preset NAME --seeds ... --out artifacts/NAME`: the seed x method
# grid runs as Ray tasks, one core each; a killed sweep resumes by re-running the command.
# `python -m lottery embed NAME --shrink-only` then deletes or float16-converts the weights and
# folds the per-level masks into one mask_levels file per method, stores the per-sample columns
# once per run and drops the null controls' scores (lottery/embedded.py).
# image-inr-region is `python -m lottery inr`; speech-unet-env first
# builds the speech corpus (`python -m lottery data speech`, Debian data packages fetched with
# apt-get download) and then trains with `python -m lottery speech`.
# One torch thread per task: on a shared 2-core machine more threads contend and run slower.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(
    fashion-mlp-class-sweep fashion-mlp-class-sweep-null fashion-mlp-class-sweep-count
    fashion-vit-cluster-sweep fashion-vit-cluster-sweep-null
    adult-mlp-cluster-sweep adult-mlp-cluster-sweep-null
    image-inr-region speech-unet-env
  )
fi
seeds_of() {
  "$PYTHON" -c "from lottery.embedded import EMBEDDED; print(' '.join(map(str, EMBEDDED['$1'].seeds)))"
}
make_one() {  # NAME [extra sweep arguments]
  local name=$1 start end size
  shift
  if [ "${FRESH:-0}" = 1 ]; then
    rm -rf "artifacts/${name:?}"
  fi
  start=$(date +%s)
  case "$name" in
    image-inr-region) "$PYTHON" -m lottery inr --out "artifacts/$name" --no-weights --quiet ;;
    speech-unet-env)
      "$PYTHON" -m lottery data speech
      "$PYTHON" -m lottery speech --out "artifacts/$name" --quiet
      ;;
    *-sweep | *-sweep-null | *-sweep-count)
      # shellcheck disable=SC2046
      "$PYTHON" -m lottery sweep --preset "$name" --seeds $(seeds_of "$name") --out "artifacts/$name" \
        --device cpu --cpus-per-run 1 --quiet "$@"
      "$PYTHON" -m lottery embed "$name" --shrink-only
      ;;
    *) "$PYTHON" -m lottery embed "$name" --quiet ;;
  esac
  end=$(date +%s)
  size=$(du -sh "artifacts/$name" | cut -f1)
  record "$name" $((end - start)) "$size"
}
record() {  # NAME SECONDS SIZE: one timing row, printed and appended to $TIMINGS if set
  local line
  line="| $1 | $2 s | $3 | $(date -u +%Y-%m-%dT%H:%MZ) | OMP_NUM_THREADS=$OMP_NUM_THREADS, $(nproc --all) cores, $how |"
  echo "$line"
  if [ -n "${TIMINGS:-}" ]; then
    echo "$line" >> "$TIMINGS"
  fi
}
how="Ray on all cores"
if [ "${LANES:-1}" -gt 1 ]; then
  how="$LANES lanes, a 1-CPU Ray per sweep"
  mapfile -t lanes < <("$PYTHON" benchmarks/regeneration_lanes.py --lanes --cores "$LANES" "${names[@]}")
  all_start=$(date +%s)
  pids=()
  for lane in "${lanes[@]}"; do
    # shellcheck disable=SC2086
    (for name in $lane; do make_one "$name" --local-cpus 1; done) &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do
    wait "$pid" || status=1
  done
  record "all ${#names[@]}" $(($(date +%s) - all_start)) "$(du -sh artifacts | cut -f1)"
  exit "$status"
fi
for name in "${names[@]}"; do
  make_one "$name"
done
