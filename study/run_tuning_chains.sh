#!/usr/bin/env bash
# The rest of the pre-registered tuning (study/tuning-plan.md) after its first command, as two
# chains side by side, one thread each (one lane of seeds per chain, so no core idles while a
# third seed trains alone). Each command writes results.json when it finishes and resumes when
# run again. Usage: bash study/run_tuning_chains.sh   (from a frozen clone's root)
set -uo pipefail
PY=${PY:-.venv/bin/python}
STUDY=("$PY" -m qmimic.study --phase tuning --seeds 0 1 2 --jobs 1 --only-variants)
export OMP_NUM_THREADS=1
mkdir -p logs
(
  "${STUDY[@]}" --sweep "qmimic:module.target_quantization=map" &&
  "${STUDY[@]}" --sweep "qmimic:quant=none" &&
  "${STUDY[@]}" --sweep "mimic,qmimic:module.mimic_weight=1,8"
) > logs/chain_a.log 2>&1 &
sleep 30  # the chains write results.json at different times; start them apart
(
  "${STUDY[@]}" --sweep "qteacher,quant,qmimic:quant.quantizer.calibration_levels=4,8"
) > logs/chain_b.log 2>&1 &
wait
