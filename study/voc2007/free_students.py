"""Lane B of this session: the teacher-free students (scratch, quant) of seeds 3-5, trained with
the study's own run_stage and overrides into the folders the study reads, so that the study
(lane A, run.sh) finds them finished. Run from the frozen clone with OMP_NUM_THREADS=1.

Used on 7 December from 04:00 to 04:16 (plan.md), before run.sh's --jobs lanes took the runs in
the order their inputs allow; kept as the record of what ran then, not needed any more."""
import os, sys, time
from pathlib import Path
from qmimic.runs.stage_runs import overrides_for, run_stage
from qmimic.stages import load_stages

voc = os.environ["VOC"]
stages = load_stages("voc_cpu")
out = Path("outputs/voc2007/confirmation/defaults")
for seed in (3, 4, 5):
    for stage in stages:
        if stage.name not in ("scratch", "quant"):
            continue
        started = time.monotonic()
        r = run_stage(stage, seed, out, overrides_for(stage, stages, [f"data.root={voc}"]),
                      env={"OMP_NUM_THREADS": "1"}, quiet=True)
        print(f"[seed {seed}] {stage.name}: {r.get('test/voc07_map')} "
              f"({(time.monotonic() - started) / 60:.1f} min)", flush=True)
