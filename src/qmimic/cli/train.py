"""Train (and test) one model: ``python -m qmimic.train [+experiment=NAME] [key=value ...]``.

Writes into the Hydra run directory: ``config.yaml`` (resolved), ``checkpoints/{last,best}.ckpt``,
logger output, ``results.json`` with the test metrics and the facts of the run, and ``train.log``
with what the run said.

Under DDP (``trainer=ddp trainer.devices=N``) Lightning re-runs this command for ranks 1..N-1
and passes them rank 0's ``hydra.run.dir``, so every rank resolves the same output directory;
only global rank 0 writes files or logs the run's summary lines.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from qmimic.cli import hydra_command
from qmimic.conf import check_complete
from qmimic.errors import UserError
from qmimic.io.callbacks import (
    ConfigInCheckpoint,
    RandomStateInCheckpoint,
    WallTimeInCheckpoint,
    WandbRunInCheckpoint,
)
from qmimic.io.checkpoints import (
    WANDB_ID_KEY,
    check_matches,
    load_checkpoint,
    load_run,
    quantization_plan,
)
from qmimic.io.environment import describe, run_environment
from qmimic.io.loggers import instantiate_loggers, keep_csv_history
from qmimic.io.results import (
    per_class_ap,
    per_class_markdown,
    record_left_out,
    write_json,
    write_text,
)
from qmimic.log import format_metrics, get_logger
from qmimic.metrics.names import SKIPPED, VAL, key, split_of
from qmimic.models import TwoStageDetector, model_report
from qmimic.quant import QuantizationPlan, feature_quantizers
from qmimic.quant.calibration import CalibrateQuantizers

log = get_logger("qmimic.train")


def _experiment_name() -> str:
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get("experiment") or "default")


def build_net(cfg: DictConfig) -> tuple[TwoStageDetector, QuantizationPlan | None]:
    """The configured detector: weights from ``init_ckpt`` if set, then the ``quant`` plan."""
    net = instantiate(cfg.model)
    if cfg.get("init_ckpt"):
        # Rebuilding the saved detector draws random initial weights; keep those draws out of
        # the seeded stream, so the run draws what it would without init_ckpt.
        with torch.random.fork_rng(devices=[]):
            state = load_run(cfg.init_ckpt).detector.state_dict()
        check_matches(state, net, cfg.init_ckpt)
        net.load_state_dict(state)
    plan = quantization_plan(cfg.get("quant"))
    if plan is not None:
        placed = plan.apply(net)
        log.info("quantizers on: %s", ", ".join(placed))
    return net, plan


def build_module(cfg: DictConfig, net: TwoStageDetector) -> L.LightningModule:
    """The configured LightningModule around ``net``; a distillation stage (``teacher_ckpt``
    set) gets its teacher read here with :func:`load_run` and handed in."""
    if cfg.get("teacher_ckpt") is None:
        return instantiate(cfg.module, net=net)
    if "teacher" not in inspect.signature(get_class(cfg.module._target_)).parameters:
        raise UserError(
            f"teacher_ckpt is set but module={cfg.module._target_} trains without a teacher; "
            "drop teacher_ckpt, or use a distillation stage (+experiment=mimic_<data> or "
            "qmimic_<data>)"
        )
    # Rebuilding the teacher draws random initial weights; keep those draws out of the seeded
    # stream, as for init_ckpt.
    with torch.random.fork_rng(devices=[]):
        teacher = load_run(cfg.teacher_ckpt).detector
    return instantiate(cfg.module, net=net, teacher=teacher)


def _float_baseline(trainer: L.Trainer, module: L.LightningModule, datamodule) -> dict:
    """Test metrics with every quantizer switched off: the model before quantization."""
    quantizers = feature_quantizers(module.net)
    for q in quantizers:
        q.enabled = False
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    for q in quantizers:
        q.enabled = True
    return {f"float/{k}": float(v) for k, v in metrics.items()}  # test/x -> float/test/x


def _check_resume(
    ckpt_path: str | None, module: L.LightningModule
) -> tuple[str | None, str | None]:
    """The checkpoint to resume from (checked against ``module``) and the wandb run id it
    recorded, or Nones for a fresh run."""
    if ckpt_path is None:
        return None, None
    checkpoint = load_checkpoint(ckpt_path)
    check_matches(checkpoint["state_dict"], module, ckpt_path)
    return str(Path(ckpt_path).expanduser()), checkpoint.get(WANDB_ID_KEY)


def _check_distributed(trainer: L.Trainer, datamodule: L.LightningDataModule) -> None:
    """Refuse what cannot run on several processes, before anything is written.

    A sweep (``-m``): Lightning starts ranks 1..N-1 by re-running the command line with
    ``hydra.run.dir`` added; under ``-m`` that command is the whole sweep, so each extra
    process would run every job into directories of its own. (Under torchrun or SLURM the
    processes exist beforehand.) Aspect-ratio grouping: its batch sampler draws batches from
    the whole training set, and Lightning cannot shard it between processes.
    """
    if trainer.world_size < 2:
        return
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if _is_sweep() and environment is not None and not environment.creates_processes_externally:
        raise UserError(
            "a sweep (-m) cannot start DDP processes: run each combination as its own "
            "`python -m qmimic.train trainer=ddp ...` command, or sweep with trainer.devices=1"
        )
    if getattr(datamodule, "aspect_ratio_grouping", False):
        raise UserError(
            "data.aspect_ratio_grouping=true cannot be split between DDP processes; "
            "pass data.aspect_ratio_grouping=false"
        )


def _is_sweep() -> bool:
    """Whether this process runs one job of a Hydra multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test the configured model; returns what it writes to ``results.json``."""
    started = time.perf_counter()
    check_complete(cfg, "e.g. the previous stage's checkpoint, or your dataset's files")
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data.datamodule)
    # Fail on a missing dataset, or on missing files of any split this run reads, before
    # anything is written or trained.
    datamodule.use_splits(["train", "val", *(["test"] if cfg.get("test", True) else [])])
    if "classes" in cfg.data and cfg.data.classes is None:  # data=voc_folder: found in the files
        cfg.data.classes = list(datamodule.class_names)  # recorded in config.yaml and checkpoints
    if cfg.data.get("num_classes") is None:  # data=coco, voc_folder: the files' classes decide
        cfg.data.num_classes = datamodule.num_classes
    elif datamodule.num_classes != cfg.data.num_classes:
        raise UserError(
            f"data.num_classes={cfg.data.num_classes} but the dataset has "
            f"{datamodule.num_classes} classes including background; fix the config (or, "
            "for COCO files or an exported VOC folder, leave data.num_classes=null to take it "
            "from their classes)"
        )
    net, plan = build_net(cfg)
    module = build_module(cfg, net)
    resume_from, wandb_id = _check_resume(cfg.get("ckpt_path"), module)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    if plan is not None and plan.calibration_batches > 0:
        every_epoch = plan.step_rule == "epoch"
        callbacks.append(CalibrateQuantizers(plan.calibration_batches, every_epoch=every_epoch))
    loggers = instantiate_loggers(list((cfg.get("logger") or {}).values()), resume_id=wandb_id)
    if resume_from is not None:
        keep_csv_history(loggers)
    for logger in loggers:  # the whole config, so dashboards can compare runs by any key
        logger.log_hyperparams(resolved)
    clock = WallTimeInCheckpoint(started)
    callbacks += [
        ConfigInCheckpoint(resolved), RandomStateInCheckpoint(), WandbRunInCheckpoint(), clock,
    ]  # fmt: skip
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    _check_distributed(trainer, datamodule)
    if trainer.is_global_zero:  # the trainer knows each process's rank from its creation on
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    report = model_report(module.net)  # at the test-time input size and proposal budget
    environment = run_environment()
    log.info("environment: %s", describe(environment))
    height, width = report["input_size"]
    log.info(
        "model: %s %s width=%s parameters=%s GFLOPs=%.3f at %dx%d",
        cfg.model.arch,
        cfg.model.framework,
        cfg.model.width,
        f"{report['parameters']:,}",
        report["gflops"],
        height,
        width,
    )

    before = {}
    if plan is not None and cfg.get("init_ckpt") and resume_from is None and cfg.get("test", True):
        before = _float_baseline(trainer, module, datamodule)  # stage 2: mAP before quantization
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    validated = {  # the last validation's scalars, for sweepers (optimized_metric)
        k: float(v) for k, v in trainer.callback_metrics.items() if split_of(k)[0] == VAL
    }
    metrics = {}
    if cfg.get("test", True):
        metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    results = {
        "experiment": _experiment_name(),
        "task_name": cfg.task_name,
        "seed": cfg.seed,
        "parameters": report["parameters"],
        "gflops": report["gflops"],
        "input_size": report["input_size"],
        "wall_time_s": round(clock.elapsed(), 1),  # earlier processes of a resumed run included
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "output_dir": str(output_dir),
        "environment": environment,
        **before,
        **validated,
        **{k: float(v) for k, v in metrics.items()},
    }
    left_out = {split: datamodule.report.skipped(split) for split in datamodule.active}
    aps = per_class_ap(module.test_results, datamodule.class_names) if metrics else {}
    if aps:
        results["test/per_class_ap"] = aps
    if trainer.is_global_zero:  # metrics are gathered over all ranks: the same on each
        results |= record_left_out(output_dir, left_out)
        if aps:
            table = per_class_markdown(aps, results.get("test/voc07_map"))
            write_text(output_dir / "per_class_ap.md", table)
        write_json(output_dir / "results.json", results)
        log.info("results written to %s\n%s", output_dir / "results.json", format_metrics(metrics))
    return results


@hydra_command("train")
def main(cfg: DictConfig) -> float | None:
    """Train; return ``optimized_metric`` (a metric of the last validation) to a sweeper."""
    results = train(cfg)
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    if metric in results:
        return results[metric]
    known = ", ".join(k for k in results if split_of(k)[0] == VAL and k != key(VAL, SKIPPED))
    if known or _is_sweep():  # a misspelt metric, or a sweeper that needs the value
        raise UserError(
            f"optimized_metric={metric} was not logged; "
            + (f"choose one of: {known}" if known else "no validation ran, so let it run")
        )
    # a single run that validated nothing (e.g. trainer.max_steps within the first epoch) has
    # nothing to hand a sweeper, and its results are on disk: not an error
    log.warning("no validation ran, so optimized_metric=%s has no value", metric)
    return None


if __name__ == "__main__":
    main()
