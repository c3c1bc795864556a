#!/usr/bin/env bash
# The real-photograph study of study/voc2007/plan.md. Resumable: run it again after a cut.
# Usage: VOC=~/data/voc2007-400 bash study/voc2007/run.sh   (from the root of a frozen clone)
# TEACHERS="--teacher-block 1,2 --teacher-block 3,4,5" replaces the one shared teacher by one
# per block of seeds (plan.md, "If the machine was reset").
set -euo pipefail
PY=${PY:-.venv/bin/python}
VOC=${VOC:-$HOME/data/voc2007-400}
read -r -a TEACHER_ARGS <<< "${TEACHERS:---shared-teacher}"
if [[ ! -d "$VOC/VOCdevkit/VOC2007" ]]; then
  echo "error: no VOCdevkit/VOC2007 under $VOC; unpack ../shared/data/voc2007/VOC2007-trainval-400px.tar there" >&2
  exit 2
fi
"$PY" -m qmimic.study --data voc_cpu --phase confirmation --seeds 1 2 3 4 5 "${TEACHER_ARGS[@]}" \
  --jobs 2 --out study/voc2007 --runs outputs/voc2007 "data.root=$VOC"
