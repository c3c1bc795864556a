"""Evaluate a checkpoint: ``python -m qmimic.evaluate ckpt=PATH [data=NAME data.root=...]``.

Scores the data's test split with the data's protocol (VOC07 mAP for VOC layouts, the official
easy/medium/hard AP for WIDER FACE) beside COCO mAP; only that split's files need to exist.
Writes ``results.json`` (test metrics, ``test/images`` scored and ``test/skipped``),
``per_class_ap.md`` (VOC07 AP per class, VOC protocol), ``skipped.json`` (when samples were left
out) and ``evaluate.log`` into the Hydra run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qmimic.cli import hydra_command
from qmimic.conf import check_complete
from qmimic.drawing import class_name
from qmimic.errors import UserError
from qmimic.io.checkpoints import load_run
from qmimic.io.results import record_left_out, write_json, write_text
from qmimic.log import format_metrics, get_logger
from qmimic.models import count_parameters
from qmimic.modules import DetectorModule

log = get_logger("qmimic.evaluate")


def per_class_table(results: dict, class_names: tuple[str, ...]) -> str:
    """Markdown table of VOC07 AP per class (classes with at least one non-difficult object)."""
    lines = ["| class | AP (VOC07, IoU 0.5) |", "|---|---|"]
    classes = results.get("voc07_classes")
    aps = results.get("voc07_ap_per_class")
    if classes is not None and aps is not None:
        for label, ap in zip(classes.reshape(-1).tolist(), aps.reshape(-1).tolist(), strict=True):
            lines.append(f"| {class_name(int(label), class_names)} | {100 * ap:.1f} |")
    if "voc07_map" in results:
        lines.append(f"| **mean** | **{100 * float(results['voc07_map']):.1f}** |")
    return "\n".join(lines) + "\n"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    check_complete(cfg, "e.g. ckpt=outputs/<task>/runs/<time>/checkpoints/last.ckpt")
    L.seed_everything(cfg.seed, workers=True)
    run = load_run(cfg.ckpt)
    data_cfg = cfg.data if cfg.get("data") is not None else OmegaConf.create(run.config["data"])
    if "classes" in data_cfg and data_cfg.classes is None and run.class_names:
        # data whose classes come from its training annotations: the checkpoint's, in its order,
        # so that only the evaluated split is read and the labels mean what they meant in training
        data_cfg.classes = list(run.class_names)
    # scored with the data's own protocol: VOC07 for VOC layouts, easy/medium/hard for WIDER FACE
    protocol = data_cfg.get("eval_protocol", "voc")
    module = DetectorModule(run.detector, optimizer=None, eval_protocol=protocol)  # test only
    datamodule = instantiate(data_cfg.datamodule)
    datamodule.use_splits(["test"])  # only the evaluated split's files need to exist
    if datamodule.num_classes != run.num_classes:
        raise UserError(
            f"the checkpoint predicts {run.num_classes} classes but the "
            f"data has {datamodule.num_classes}; pick the data it was trained on"
        )
    output_dir = Path(cfg.paths.output_dir)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    results = {
        "checkpoint": str(Path(cfg.ckpt).expanduser().resolve()),
        "data": data_cfg.get("name"),
        "parameters": count_parameters(module.net),
        **{k: float(v) for k, v in metrics.items()},
        **record_left_out(output_dir, {"test": datamodule.report.skipped("test")}),
    }
    write_json(output_dir / "results.json", results)
    table = ""
    if protocol == "voc":  # WIDER FACE has one class; its settings are in results.json
        table = per_class_table(module.test_results, datamodule.class_names)
        write_text(output_dir / "per_class_ap.md", table)
    log.info("%s\nresults written to %s\n%s", table, output_dir, format_metrics(metrics))
    return results


@hydra_command("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
