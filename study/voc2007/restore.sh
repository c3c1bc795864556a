#!/usr/bin/env bash
# After a machine reset: put the kept records of finished runs back into a fresh frozen clone,
# so that the study reuses them (study/voc2007/plan.md, "If the machine was reset").
#
# Usage (from the root of the main checkout): bash study/voc2007/restore.sh /work/voc-study
#
# Copies every finished run (a folder with results.json) of study/voc2007/runs/ into
# <clone>/outputs/voc2007/, leaving runs the clone already has untouched. Unfinished runs are not
# copied: without their checkpoints they would start again anyway. The records carry no weights,
# so a distilling student can only be trained again against a teacher trained in the clone:
# choose the teacher blocks (TEACHERS=... for run.sh) so that every seed of a restored teacher's
# block already has its mimic and qmimic finished.
set -euo pipefail
CLONE=${1:?usage: bash study/voc2007/restore.sh CLONE (a fresh frozen clone of the study)}
SRC=study/voc2007/runs
DEST="$CLONE/outputs/voc2007"
if [[ ! -d "$CLONE/study/voc2007" ]]; then
  echo "error: $CLONE is not a clone of this repository; make one with git clone first" >&2
  exit 2
fi
restored=0
while IFS= read -r -d '' results; do
  run=$(dirname "$results")
  rel=${run#"$SRC"/}
  if [[ -e "$DEST/$rel" ]]; then
    continue
  fi
  mkdir -p "$(dirname "$DEST/$rel")"
  cp -a "$run" "$DEST/$rel"
  echo "restored $rel"
  restored=$((restored + 1))
done < <(find "$SRC" -name results.json -print0 | sort -z)
echo "restored $restored finished runs into $DEST"
