#!/usr/bin/env bash
# Keep the VOC study's run records in the repository, so that a machine reset between sessions
# does not lose the figures of finished runs (study/voc2007/plan.md, "If the machine was reset").
#
# Usage (from the root of the main checkout): bash study/voc2007/keep.sh /work/voc-study
#
# For every run under <clone>/outputs/voc2007 (a folder with .hydra/config.yaml; the links of
# the shared-teacher seeds are left out, the study makes them again) it copies into
# study/voc2007/runs/ the run's results, configs, metrics and logs. Checkpoints (weights) stay
# out of the repository. Files already kept are replaced by the newer copy; nothing is deleted.
set -euo pipefail
CLONE=${1:?usage: bash study/voc2007/keep.sh CLONE (the frozen clone running the study)}
SRC="$CLONE/outputs/voc2007"
DEST=study/voc2007/runs
if [[ ! -d "$SRC" ]]; then
  echo "error: no $SRC; pass the folder of the frozen clone that runs study/voc2007/run.sh" >&2
  exit 2
fi
finished=0
started=0
while IFS= read -r -d '' config; do
  run=$(dirname "$(dirname "$config")")
  [[ -L "$run" ]] && continue
  rel=${run#"$SRC"/}
  mkdir -p "$DEST/$rel"
  tar -C "$run" --exclude=./checkpoints -cf - . | tar -C "$DEST/$rel" -xf -
  if [[ -f "$run/results.json" ]]; then
    finished=$((finished + 1))
  else
    started=$((started + 1))
  fi
done < <(find "$SRC" -path '*/.hydra/config.yaml' -print0)
echo "kept $finished finished and $started unfinished runs in $DEST"
