"""The environment facts a run records beside its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from qmimic.io.environment import describe, run_environment


def test_facts_are_plain_json_and_follow_the_thread_setting():
    facts = run_environment()
    assert json.loads(json.dumps(facts)) == facts
    assert facts["threads"] == torch.get_num_threads()
    assert facts["torchvision"] and facts["numpy"] and facts["processor"]
    line = describe(facts)
    assert line.startswith(f"torch {facts['torch']}, ") and f"{facts['threads']} threads" in line


def test_thread_count_is_what_the_process_was_given():
    """The study's parallel lanes run with OMP_NUM_THREADS=1: the record must say so."""
    code = "import json; from qmimic.io.environment import run_environment; "
    code += "print(json.dumps(run_environment()))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["threads"] == 1
