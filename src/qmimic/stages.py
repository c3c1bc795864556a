"""The stages of the method as the ``stage`` config group defines them.

Each ``stage/<name>.yaml`` holds a ``stage:`` block: its ``name``, its ``order`` in the pipeline,
whether it is a ``student`` or a ``control`` (an experiment's control, run only when asked for,
not a step of the method), and what it ``needs`` (an override key, e.g. ``teacher_ckpt``,
mapped to the stage whose ``checkpoints/last.ckpt`` it takes). The pipeline, the summaries and
the benchmarks read the graph from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from omegaconf import OmegaConf

from qmimic.conf import CONFIG_MODULE, load_config, options
from qmimic.errors import UserError


@dataclass(frozen=True)
class Stage:
    """One stage of the method on one dataset.

    Attributes:
        name: the stage (``teacher``, ``qteacher``, ``scratch``, ``quant``, ``mimic``, ``qmimic``).
        experiment: the ``+experiment=`` that trains it, ``<name>_<data>``.
        order: its position in the pipeline and in tables.
        student: whether it trains a student (the target of ``students:key=value``).
        needs: override key -> name of the stage whose ``last.ckpt`` it takes.
        control: a control run of the study (``ftteacher``), not a step of the method: the
            pipeline runs it only when named in ``--stages``.
    """

    name: str
    experiment: str
    order: int
    student: bool
    needs: dict[str, str]
    control: bool = False


def stage_names(controls: bool = False) -> list[str]:
    """The stages of the method (and the controls too if ``controls``), in pipeline order, read
    from the files' ``stage`` blocks without composing any config."""
    folder = files(CONFIG_MODULE).joinpath("stage")
    blocks = {
        name: OmegaConf.create(folder.joinpath(f"{name}.yaml").read_text()).stage
        for name in options("stage")
    }
    chosen = [name for name, block in blocks.items() if controls or not block.get("control")]
    return sorted(chosen, key=lambda name: int(blocks[name].order))


def load_stages(data: str) -> list[Stage]:
    """The stages of the method on the recipe ``data``, in pipeline order.

    Raises:
        UserError: no recipe of that name, or a stage that needs a stage that does not exist.
    """
    recipes = options("recipe")
    if data not in recipes:
        raise UserError(
            f"no recipe {data!r}; choose one of {', '.join(recipes)} "
            "(or add qmimic/conf/recipe/<data>.yaml)"
        )
    stages = []
    for name in options("stage"):
        cfg = load_config("train", [f"+experiment={name}_{data}"])
        block = OmegaConf.to_container(cfg.stage)
        if block.get("name") != name:  # e.g. a new stage that inherits another's block
            raise UserError(
                f"stage/{name}.yaml says stage.name={block.get('name')!r}; set stage.name: {name}"
            )
        stages.append(
            Stage(
                name=name,
                experiment=f"{name}_{data}",
                order=int(block["order"]),
                student=bool(block.get("student", False)),
                needs={str(k): str(v) for k, v in (block.get("needs") or {}).items()},
                control=bool(block.get("control", False)),
            )
        )
    stages.sort(key=lambda stage: stage.order)
    known = {stage.name for stage in stages}
    for stage in stages:
        for source in stage.needs.values():
            if source not in known:
                raise UserError(f"stage {stage.name} needs a stage {source!r} that does not exist")
    return stages
