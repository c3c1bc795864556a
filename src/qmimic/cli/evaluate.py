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
from qmimic.errors import UserError
from qmimic.io.checkpoints import load_run
from qmimic.io.results import (
    per_class_ap,
    per_class_markdown,
    record_left_out,
    write_json,
    write_text,
)
from qmimic.log import format_metrics, get_logger
from qmimic.models import count_parameters
from qmimic.modules import DetectorModule

log = get_logger("qmimic.evaluate")


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
    table = ""
    if protocol == "voc":  # WIDER FACE has one class; its settings are in results.json
        aps = per_class_ap(module.test_results, datamodule.class_names)
        results["test/per_class_ap"] = aps
        table = per_class_markdown(aps, results.get("test/voc07_map"))
        write_text(output_dir / "per_class_ap.md", table)
    write_json(output_dir / "results.json", results)
    log.info("%s\nresults written to %s\n%s", table, output_dir, format_metrics(metrics))
    return results


@hydra_command("evaluate", unchosen_groups=("data",))
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
