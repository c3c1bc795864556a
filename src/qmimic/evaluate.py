"""Evaluate a checkpoint: ``python -m qmimic.evaluate ckpt=PATH [data=NAME data.root=...]``.

Writes ``results.json`` (test metrics) and ``per_class_ap.md`` (VOC07 AP per class) into the
Hydra run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qmimic.checkpoints import load_checkpoint
from qmimic.errors import UserError, exit_on_user_error
from qmimic.models import count_parameters
from qmimic.modules import DetectorModule
from qmimic.modules.from_checkpoint import detector_from_checkpoint
from qmimic.results import format_metrics, write_json
from qmimic.train import CONFIG_DIR


def per_class_table(results: dict, class_names: tuple[str, ...]) -> str:
    """Markdown table of VOC07 AP per class (classes with at least one non-difficult object)."""
    lines = ["| class | AP (VOC07, IoU 0.5) |", "|---|---|"]
    classes = results.get("voc07_classes")
    aps = results.get("voc07_ap_per_class")
    if classes is not None and aps is not None:
        for label, ap in zip(classes.reshape(-1).tolist(), aps.reshape(-1).tolist(), strict=True):
            name = class_names[int(label) - 1] if 0 < label <= len(class_names) else str(label)
            lines.append(f"| {name} | {100 * ap:.1f} |")
    if "voc07_map" in results:
        lines.append(f"| **mean** | **{100 * float(results['voc07_map']):.1f}** |")
    return "\n".join(lines) + "\n"


def build_module(checkpoint: dict, path: str) -> tuple[DetectorModule, dict]:
    """A test-only module around the detector stored in ``checkpoint`` (quantizers included)."""
    net, config = detector_from_checkpoint(checkpoint, path)
    return DetectorModule(net, optimizer=None), config


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True)
    checkpoint = load_checkpoint(cfg.ckpt)
    module, saved = build_module(checkpoint, cfg.ckpt)
    data_cfg = cfg.data if cfg.get("data") is not None else OmegaConf.create(saved["data"])
    datamodule = instantiate(data_cfg.datamodule)
    datamodule.prepare_data()
    if datamodule.num_classes != saved["model"]["num_classes"]:
        raise UserError(
            f"the checkpoint predicts {saved['model']['num_classes']} classes but the "
            f"data has {datamodule.num_classes}; pick the data it was trained on"
        )
    output_dir = Path(cfg.paths.output_dir)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    metrics = trainer.test(module, datamodule=datamodule)[0]
    results = {
        "checkpoint": str(Path(cfg.ckpt).expanduser().resolve()),
        "data": data_cfg.get("name"),
        "parameters": count_parameters(module.net),
        **{k: float(v) for k, v in metrics.items()},
    }
    write_json(output_dir / "results.json", results)
    table = per_class_table(module.test_results, datamodule.class_names)
    (output_dir / "per_class_ap.md").write_text(table)
    print(f"\n{table}\nresults written to {output_dir}\n{format_metrics(metrics)}")
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
