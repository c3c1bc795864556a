"""Orchestration of several runs: each stage as a ``qmimic.train`` run in its own process
(:mod:`~qmimic.runs.stage_runs`), the pipeline's and sweeps' summaries and the method's verdict
(:mod:`~qmimic.runs.summary`, :mod:`~qmimic.runs.sweep`). Above the library; below ``cli``."""
