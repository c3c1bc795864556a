"""What a run leaves and reads: checkpoints and trained runs, ``results.json``, summaries of
several runs and of sweeps, the Lightning callbacks and logger factories of a run, and its log."""
