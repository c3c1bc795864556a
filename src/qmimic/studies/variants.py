"""Study variants: the defaults, and each point of a swept ablation.

An ablation is written like a Hydra multirun override, scoped like a pipeline override:
``qteacher,quant,qmimic:quant.quantizer.calibration_levels=4,8`` gives two variants, one per
value; several swept overrides give their cartesian product, as ``-m`` does. Hydra's own override
parser reads the values, so every sweep form it accepts (``range(1,4)``, ``choice(a,b)``, lists
in brackets) works here too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from qmimic.errors import UserError
from qmimic.runs.stage_runs import overrides_for, scope_names
from qmimic.stages import Stage

DEFAULTS = "defaults"


@dataclass(frozen=True)
class Variant:
    """One setting of the study: ``overrides`` (pipeline-scoped) on top of the defaults."""

    overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return " ".join(self.overrides) if self.overrides else DEFAULTS

    @property
    def folder(self) -> str:
        """A folder name for the variant's runs: letters, digits and ``._+-`` only, as it goes
        into a ``hydra.run.dir=`` override."""
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", self.name)


def expand(sweeps: Sequence[str], stages: Sequence[Stage]) -> list[Variant]:
    """The variants a list of (possibly swept) scoped overrides stands for, in sweep order.

    Raises:
        UserError: an override Hydra cannot parse.
    """
    known = {s.name for s in stages} | {"students"}
    parser = OverridesParser.create()
    choices = []
    for sweep in sweeps:
        scope, sep, rest = sweep.partition(":")
        if not (sep and scope_names(scope, known)):
            scope, rest = "", sweep
        try:
            (override,) = parser.parse_overrides([rest])
        except HydraException as error:
            raise UserError(f"cannot read the ablation {sweep!r}: {error}") from None
        key = override.get_key_element()
        values = (
            list(override.sweep_string_iterator())
            if override.is_sweep_override()
            else [override.get_value_element_as_str()]
        )
        prefix = f"{scope}:" if scope else ""
        choices.append([f"{prefix}{key}={value}" for value in values])
    return [Variant(tuple(combo)) for combo in itertools.product(*choices)] if choices else []


def reused_stages(variant: Variant, stages: Sequence[Stage]) -> set[str]:
    """The stages ``variant`` takes from the defaults' runs instead of training again: those no
    override of the variant reaches and whose inputs are themselves reused (a student of a
    variant that changes only students mimics the defaults' teacher)."""
    reused: set[str] = set()
    for stage in sorted(stages, key=lambda s: s.order):
        untouched = not overrides_for(stage, stages, variant.overrides)
        if untouched and all(source in reused for source in stage.needs.values()):
            reused.add(stage.name)
    return reused
