#!/usr/bin/env bash
# Regenerate the embedded default runs under artifacts/ and record the wall time of each.
#
#   scripts/make_embedded_runs.sh                       # all five, one after the other
#   scripts/make_embedded_runs.sh fashion-vit-cluster   # just one
#   FRESH=1 scripts/make_embedded_runs.sh               # delete the run folders first
#   TIMINGS=notes/embedded_runs.md scripts/make_embedded_runs.sh   # also append the timings there
#
# Each run is `python -m lottery embed NAME` (preset NAME, see lottery/presets.py): it trains or
# resumes artifacts/NAME (a killed run resumes by re-running the command; the time printed is then
# that of the resumed part), then deletes or float16-converts the weights (lottery/embedded.py).
# image-inr-region is `python -m lottery inr`; speech-unet-env first builds the speech corpus
# (`python -m lottery data speech`, Debian data packages fetched with apt-get download) and then
# trains with `python -m lottery speech`.
# One torch thread per run: on a shared 2-core machine more threads contend and run slower.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(fashion-mlp-class fashion-vit-cluster adult-mlp-cluster image-inr-region speech-unet-env)
fi
for name in "${names[@]}"; do
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
    *) "$PYTHON" -m lottery embed "$name" --quiet ;;
  esac
  end=$(date +%s)
  size=$(du -sh "artifacts/$name" | cut -f1)
  line="| $name | $((end - start)) s | $size | $(date -u +%Y-%m-%dT%H:%MZ) | OMP_NUM_THREADS=$OMP_NUM_THREADS, $(nproc --all) cores |"
  echo "$line"
  if [ -n "${TIMINGS:-}" ]; then
    echo "$line" >> "$TIMINGS"
  fi
done
