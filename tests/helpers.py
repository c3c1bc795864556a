"""Test helpers: tiny specs and config composition (importable as ``helpers``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from qmimic.data.shapes import ShapesSpec
from qmimic.train import CONFIG_DIR, build_net

TINY_SPEC = ShapesSpec(num_train=8, num_val=4, num_test=4, image_size=96, max_object_size=48)

# A detector small and cheap enough for unit tests.
TINY_DETECTOR = dict(
    num_classes=7,
    min_size=96,
    max_size=96,
    anchor_sizes=(16, 32, 64),
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=50,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=20,
    box_batch_size_per_image=16,
    roi_output_size=7,
)


def tiny_overrides(cache: Path, log_dir: Path) -> list[str]:
    """Overrides that shrink any shapes run to a few seconds."""
    return [
        f"data.root={cache}",
        f"data.num_train={TINY_SPEC.num_train}",
        f"data.num_val={TINY_SPEC.num_val}",
        f"data.num_test={TINY_SPEC.num_test}",
        f"data.image_size={TINY_SPEC.image_size}",
        f"paths.log_dir={log_dir}",
        "logger=csv",
    ]


def compose_train_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """``conf/train.yaml`` composed as the command line would, with a Hydra runtime set."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


def run_cli(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m <module> <overrides>`` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def save_untrained_checkpoint(experiment: str, overrides: list[str], path: Path) -> Path:
    """A checkpoint of ``experiment``'s detector in the format ``qmimic.train`` writes (weights
    random, quantizers uncalibrated): a stand-in stage input for tests."""
    cfg = compose_train_config([f"+experiment={experiment}", *overrides], path.parent)
    with open_dict(cfg):
        cfg.init_ckpt = None
    net, _ = build_net(cfg)
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "qmimic_config": OmegaConf.to_container(cfg, resolve=True),
        },
        path,
    )
    return path
