#!/usr/bin/env bash
# Keep the VOC study's finished runs in the repository, so a machine that is reset between
# sessions loses at most the runs in progress (study/voc2007/plan.md, "If the machine was reset").
#
# Usage (from the root of the main checkout): bash study/voc2007/keep.sh /work/voc-study
#
# Copies, for every finished run under <clone>/outputs/voc2007 (one holding results.json):
# its results, config, metrics and logs into study/voc2007/runs/, and for the stages the later
# stages read (teacher, qteacher: the students' teacher_ckpt) also checkpoints/last.ckpt, about
# 6 MB each. Other checkpoints, runs in progress and the links of the shared-teacher seeds (the
# study makes them again) are left out. Never deletes anything.
set -euo pipefail
CLONE=${1:?usage: bash study/voc2007/keep.sh CLONE (the frozen clone running the study)}
SRC="$CLONE/outputs/voc2007"
DEST=study/voc2007/runs
if [[ ! -d "$SRC" ]]; then
  echo "error: no $SRC; pass the folder of the frozen clone that runs study/voc2007/run.sh" >&2
  exit 2
fi
kept=0
while IFS= read -r -d '' results; do
  run=$(dirname "$results")
  [[ -L "$run" ]] && continue
  rel=${run#"$SRC"/}
  mkdir -p "$DEST/$rel"
  tar -C "$run" --exclude=./checkpoints -cf - . | tar -C "$DEST/$rel" -xf -
  case "$(basename "$run")" in
    teacher | qteacher)
      mkdir -p "$DEST/$rel/checkpoints"
      cp -p "$run/checkpoints/last.ckpt" "$DEST/$rel/checkpoints/"
      ;;
  esac
  kept=$((kept + 1))
done < <(find "$SRC" -name results.json -not -path '*/.hydra/*' -print0)
echo "kept $kept finished runs in $DEST"
