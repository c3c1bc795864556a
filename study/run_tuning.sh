#!/usr/bin/env bash
# The pre-registered tuning of study/tuning-plan.md, one sweep after another. Each command
# writes results.json when it finishes; a cut command resumes where it stopped when run again
# (finished runs are reused), so run this script again after an interruption, minus the first
# line once its results are in (it would start yet another tuning section).
# Usage: bash study/run_tuning.sh [--first]   (from the repository root of a frozen clone)
set -euo pipefail
PY=${PY:-.venv/bin/python}
STUDY=("$PY" -m qmimic.study --phase tuning --seeds 0 1 2 --jobs 2)
if [[ "${1:-}" == "--first" ]]; then
  "${STUDY[@]}" --new-tuning "the method's code changed (issue 28): teacher targets quantized after the region read, a student quantizer step that follows its features, match rates measured" \
    --sweep "quant,qmimic:quant.step_rule=fixed,epoch"
fi
"${STUDY[@]}" --only-variants --sweep "quant,qmimic:quant.step_rule=fixed,epoch"
"${STUDY[@]}" --only-variants --sweep "qmimic:module.target_quantization=map"
"${STUDY[@]}" --only-variants --sweep "qmimic:quant=none"
"${STUDY[@]}" --only-variants --sweep "mimic,qmimic:module.mimic_weight=1,8"
"${STUDY[@]}" --only-variants --sweep "qteacher,quant,qmimic:quant.quantizer.calibration_levels=4,8"
