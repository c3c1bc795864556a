"""Finding a stage's finished run again: reused only while its settings still hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from qmimic.conf import load_config
from qmimic.errors import UserError
from qmimic.runs.stage_runs import run_stage, stage_dir
from qmimic.stages import load_stages


def finished_run(out: Path, stage, seed: int, command: list[str]) -> Path:
    """A run folder as ``qmimic.train`` leaves it: the composed config and results.json."""
    folder = stage_dir(out, seed, stage.name)
    (folder / ".hydra").mkdir(parents=True)
    saved = OmegaConf.to_yaml(load_config("train", command))
    (folder / ".hydra" / "config.yaml").write_text(saved)
    (folder / "results.json").write_text(json.dumps({"test/voc07_map": 0.25}))
    return folder


def test_a_finished_run_is_reused_only_with_the_settings_it_was_trained_with(tmp_path: Path):
    qmimic = next(s for s in load_stages("shapes") if s.name == "qmimic")
    # trained with an older recipe: student regions and a schedule of its own
    inputs = [f"teacher_ckpt={tmp_path / 'elsewhere.ckpt'}"]  # handed-over paths are not compared
    trained = ["+experiment=qmimic_shapes", "seed=3", *inputs, "trainer.max_epochs=3"]
    folder = finished_run(tmp_path, qmimic, 3, [*trained, "module.regions=student"])

    same = run_stage(qmimic, 3, tmp_path, ["trainer.max_epochs=3", "module.regions=student"])
    assert same == {"test/voc07_map": 0.25}  # nothing trained: the command would have failed

    with pytest.raises(UserError) as refused:  # the shapes recipe now mimics teacher regions
        run_stage(qmimic, 3, tmp_path, ["trainer.max_epochs=3"])
    message = str(refused.value)
    assert str(folder) in message and "module.regions" in message
    assert "trainer.max_epochs" not in message and "move that folder away" in message
    with pytest.raises(UserError, match=r"trainer\.max_epochs"):
        run_stage(qmimic, 3, tmp_path, ["trainer.max_epochs=4", "module.regions=student"])
    assert json.loads((folder / "results.json").read_text()) == {"test/voc07_map": 0.25}
