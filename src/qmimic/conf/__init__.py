"""qmimic's Hydra configs, shipped inside the package and found as ``pkg://qmimic.conf``.

Primary configs: ``train``, ``evaluate``, ``predict``, ``export``. Groups: ``data``, ``model``,
``module``, ``quant``, ``trainer``, ``callbacks``, ``logger``, ``paths``, ``hydra``, and the two
that make up an experiment of the method:

- ``stage/<stage>.yaml``: what a stage of the method trains (teacher, qteacher, scratch, quant,
  mimic, qmimic), which earlier stage's checkpoint it needs (``stage.needs``) and where it stands
  in the pipeline (``stage.order``);
- ``recipe/<data>.yaml``: a dataset and the widths and schedules its stages train with.

Every pair is registered as the experiment ``<stage>_<data>``, so
``python -m qmimic.train +experiment=qmimic_voc`` is ``+recipe=voc +stage=qmimic``, and adding
a dataset to every stage is one recipe file.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from qmimic.errors import UserError
from qmimic.io.loggers import register_resolvers  # the configs' ${run_name:...} resolvers

CONFIG_MODULE = __name__
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # the ``config_path`` of the commands' ``hydra.main``


def options(group: str) -> list[str]:
    """The config names of ``group`` shipped in the package, sorted."""
    folder = files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def experiments() -> dict[str, tuple[str, str]]:
    """``{"<stage>_<data>": (stage, data)}`` for every stage and recipe shipped."""
    return {
        f"{stage}_{data}": (stage, data) for data in options("recipe") for stage in options("stage")
    }


def register_experiments() -> None:
    """Register each ``<stage>_<data>`` in the ``experiment`` group: the recipe, then the stage.

    Done in code rather than as 24 files that would differ only in two names. Importing this
    package registers them (every command imports it). A file ``experiment/<name>.yaml`` of the
    same name elsewhere on the search path is refused by Hydra.
    """
    store = ConfigStore.instance()
    for name, (stage, data) in experiments().items():
        store.store(
            group="experiment",
            name=name,
            node={"defaults": [f"/recipe/{data}", f"/stage/{stage}", "_self_"]},
            package="_global_",
        )


def load_config(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a primary config with ``overrides``, outside any running Hydra app (tests,
    benchmarks, the pipeline reading its stages); inside one (a ``hydra.main`` command) Hydra is
    already initialised and this raises. ``hydra:`` interpolations stay unresolved."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???``, found without resolving interpolations."""
    missing = []
    for key in cfg:
        if OmegaConf.is_missing(cfg, key):
            missing.append(f"{prefix}{key}")
        elif not OmegaConf.is_interpolation(cfg, key) and OmegaConf.is_dict(cfg._get_node(key)):
            missing += missing_keys(cfg._get_node(key), f"{prefix}{key}.")
    return missing


def check_complete(cfg: DictConfig, example: str) -> None:
    """Raise :class:`UserError` naming every ``???`` key of ``cfg``, with ``example`` as the fix."""
    missing = missing_keys(cfg)
    if missing:
        raise UserError(
            f"the config leaves {', '.join(missing)} unset; pass "
            + " ".join(f"{key}=..." for key in missing)
            + f" ({example})"
        )


register_resolvers()
register_experiments()
