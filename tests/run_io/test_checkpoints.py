"""Reading checkpoints: only plain data loads, and ``load_run`` rebuilds a trained detector."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import payload_checkpoint, save_untrained_checkpoint, tiny_overrides
from qmimic.errors import UserError
from qmimic.io.checkpoints import load_checkpoint, load_run


def test_a_pickle_payload_is_refused_before_it_runs(tmp_path: Path):
    path, marker = payload_checkpoint(tmp_path)
    with pytest.raises(UserError, match=r"refusing to load .*teacher\.ckpt.*could run code"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="refusing to load"):
        load_run(path)
    assert not marker.exists()


def test_a_saved_config_naming_another_function_is_refused(tmp_path: Path):
    marker = tmp_path / "made-by-config"
    path = tmp_path / "doctored.ckpt"
    config = {"model": {"_target_": "os.makedirs", "name": str(marker)}}
    torch.save({"state_dict": {}, "qmimic_config": config}, path)
    with pytest.raises(UserError, match=r"would call 'os.makedirs' \(at model\)"):
        load_run(path)
    writer = {"_target_": "qmimic.io.results.write_json"}  # a qmimic function, but no constructor
    nested = {"model": {"_target_": "qmimic.models.build_detector"},
              "data": {"datamodule": {"source": writer}}}  # fmt: skip
    torch.save({"state_dict": {}, "qmimic_config": nested}, path)
    with pytest.raises(UserError, match="at data.datamodule.source"):
        load_run(path)
    assert not marker.exists()


def test_load_run_rebuilds_the_saved_detector(shapes_cache: Path, tmp_path: Path):
    overrides = tiny_overrides(shapes_cache, tmp_path)
    path = save_untrained_checkpoint("quant_shapes", overrides, tmp_path / "student.ckpt")
    saved = torch.load(path, weights_only=True)["state_dict"]
    run = load_run(path)
    assert run.path == path and run.num_classes == 7
    assert run.config["model"]["width"] == 0.0625
    assert run.detector.feature_step is not None  # the quantizer is rebuilt too
    state = run.detector.state_dict()
    assert set(state) == {k[len("net.") :] for k in saved}
    assert all(torch.equal(state[k[len("net.") :]], v) for k, v in saved.items())
    # no names stored in this checkpoint: the config's data source names the classes
    assert run.class_names is not None and len(run.class_names) == 6


def test_a_checkpoint_without_a_qmimic_config_is_one_clear_message(tmp_path: Path):
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"net.w": torch.zeros(1)}}, path)
    with pytest.raises(UserError, match="has no qmimic config"):
        load_run(path)
