"""Train (and test) one model: ``python -m qmimic.train [+experiment=NAME] [key=value ...]``.

Writes into the Hydra run directory: ``config.yaml`` (resolved), ``checkpoints/{last,best}.ckpt``,
logger output, and ``results.json`` with the test metrics and the facts of the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qmimic.callbacks import ConfigInCheckpoint
from qmimic.checkpoints import check_matches, load_checkpoint
from qmimic.errors import UserError, exit_on_user_error
from qmimic.models import count_parameters
from qmimic.results import format_metrics, write_json

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def _experiment_name() -> str:
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get("experiment") or "default")


def _check_resume(ckpt_path: str | None, module: L.LightningModule) -> str | None:
    if ckpt_path is None:
        return None
    checkpoint = load_checkpoint(ckpt_path)
    check_matches(checkpoint["state_dict"], module, ckpt_path)
    return str(Path(ckpt_path).expanduser())


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test the configured model; returns what it writes to ``results.json``."""
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data.datamodule)
    datamodule.prepare_data()  # fail on a missing dataset before anything is written
    if datamodule.num_classes != cfg.data.num_classes:
        raise UserError(
            f"data.num_classes={cfg.data.num_classes} but the dataset has "
            f"{datamodule.num_classes} classes including background; fix the config"
        )
    module = instantiate(cfg.module, net=instantiate(cfg.model))
    resume_from = _check_resume(cfg.get("ckpt_path"), module)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    OmegaConf.save(OmegaConf.create(resolved), output_dir / "config.yaml")
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, ConfigInCheckpoint(resolved)], logger=loggers or False
    )
    parameters = count_parameters(module.net)
    print(
        f"model: {cfg.model.arch} {cfg.model.framework} width={cfg.model.width} "
        f"parameters={parameters:,}",
        flush=True,
    )

    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    metrics = trainer.test(module, datamodule=datamodule)[0] if cfg.get("test", True) else {}
    results = {
        "experiment": _experiment_name(),
        "task_name": cfg.task_name,
        "seed": cfg.seed,
        "parameters": parameters,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "output_dir": str(output_dir),
        **{k: float(v) for k, v in metrics.items()},
    }
    write_json(output_dir / "results.json", results)
    print(f"\nresults written to {output_dir / 'results.json'}\n{format_metrics(metrics)}")
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    return results.get("test/map_50")


if __name__ == "__main__":
    main()
