"""Placing quantizers on a detector, and taking them off, without touching detector code.

The feature map that feeds the RPN and the region head passes through ``detector.neck``; the
feature-map quantizer simply becomes that neck. Other layers are chosen by name pattern
(``fnmatch`` on ``named_modules`` names, e.g. ``"trunk.layer2"``) and wrapped so that their
output is quantized.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from functools import partial

from torch import Tensor, nn

from qmimic.quant.quantizer import FeatureQuantizer, QuantizerSettingError

QuantizerFactory = Callable[..., FeatureQuantizer]
# What calibration runs (the detector's ``features``: trunk, then neck): only quantizers placed
# there see calibration batches.
CALIBRATED_PREFIXES = ("trunk.", "neck")
STEP_RULES = ("fixed", "epoch", "ema")


class QuantizedOutput(nn.Module):
    """``layer`` followed by ``quantizer``; unwrapped again by :func:`remove_quantizers`."""

    def __init__(self, layer: nn.Module, quantizer: FeatureQuantizer):
        super().__init__()
        self.layer = layer
        self.quantizer = quantizer

    def forward(self, x: Tensor) -> Tensor:
        return self.quantizer(self.layer(x))


def _set_child(root: nn.Module, name: str, child: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, child)


def insert_quantizers(
    detector: nn.Module,
    make_quantizer: QuantizerFactory,
    *,
    feature_map: bool = True,
    patterns: Sequence[str] = (),
) -> list[str]:
    """Insert quantizers; returns the names of the quantized places.

    Args:
        detector: a :class:`~qmimic.models.detector.TwoStageDetector` (anything with a ``neck``).
        make_quantizer: builds one fresh quantizer per place.
        feature_map: quantize the feature map (the detector's ``neck``).
        patterns: ``fnmatch`` patterns over module names whose outputs are quantized too.

    Raises:
        QuantizerSettingError: a pattern matches no module (a typo would otherwise go
            unnoticed), or a module outside the trunk, which calibration never runs.
    """
    placed = []
    if feature_map:
        detector.neck = make_quantizer()
        placed.append("neck")
    names = [n for n, m in detector.named_modules() if n and not _inside_quantized(detector, n)]
    for pattern in patterns:
        matches = [n for n in names if fnmatch(n, pattern)]
        if not matches:
            raise QuantizerSettingError(
                f"quant.patterns entry {pattern!r} matches no module of the detector; module "
                "names look like trunk.layer2 (see print(detector))"
            )
        outside = [n for n in matches if not n.startswith(CALIBRATED_PREFIXES)]
        if outside:
            raise QuantizerSettingError(
                f"quant.patterns entry {pattern!r} matches {outside[0]}, outside the trunk: "
                "calibration runs the feature map only (trunk and neck), so a quantizer there "
                "would never be calibrated; quantize layers under trunk. (e.g. trunk.layer2)"
            )
        for name in matches:
            _set_child(
                detector, name, QuantizedOutput(detector.get_submodule(name), make_quantizer())
            )
            placed.append(name)
    return placed


def _inside_quantized(root: nn.Module, name: str) -> bool:
    parts = name.split(".")
    return any(
        isinstance(root.get_submodule(".".join(parts[:i])), QuantizedOutput | FeatureQuantizer)
        for i in range(1, len(parts) + 1)
    )


def remove_quantizers(detector: nn.Module) -> int:
    """Undo :func:`insert_quantizers`; returns how many quantizers were removed."""
    removed = 0
    if isinstance(getattr(detector, "neck", None), FeatureQuantizer):
        detector.neck = nn.Identity()
        removed += 1
    wrapped = [n for n, m in detector.named_modules() if isinstance(m, QuantizedOutput)]
    for name in sorted(wrapped, key=len, reverse=True):  # innermost first
        _set_child(detector, name, detector.get_submodule(name).layer)
        removed += 1
    return removed


def feature_quantizers(module: nn.Module) -> list[FeatureQuantizer]:
    """Every :class:`FeatureQuantizer` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, FeatureQuantizer)]


class QuantizationPlan:
    """What the ``quant`` config group describes: which places get which quantizer.

    Args:
        quantizer: ``_partial_`` factory of :class:`FeatureQuantizer`.
        feature_map: quantize the detector's feature map.
        patterns: further module-name patterns to quantize.
        calibration_batches: training batches used to calibrate the step before fitting
            (0: keep the configured step).
        step_rule: how the step follows the features while the detector trains:
            ``"fixed"`` (calibrated once before fitting, then frozen), ``"epoch"`` (calibrated
            again at the start of every epoch) or ``"ema"`` (calibrated before fitting, then
            moved every training step towards the batch's own calibrated step with
            ``momentum``; see :class:`FeatureQuantizer`).
        momentum: the ``"ema"`` rule's momentum.
    """

    def __init__(
        self,
        quantizer: QuantizerFactory,
        feature_map: bool = True,
        patterns: Sequence[str] = (),
        calibration_batches: int = 0,
        step_rule: str = "fixed",
        momentum: float = 0.99,
    ):
        if step_rule not in STEP_RULES:
            raise QuantizerSettingError(
                f"quant.step_rule must be one of {STEP_RULES}, got {step_rule!r}"
            )
        if step_rule != "fixed" and calibration_batches <= 0:
            raise QuantizerSettingError(
                f"quant.step_rule={step_rule} follows the features from a calibrated step: "
                "set quant.calibration_batches to 1 or more"
            )
        self.quantizer = quantizer
        self.feature_map = feature_map
        self.patterns = tuple(patterns)
        self.calibration_batches = calibration_batches
        self.step_rule = step_rule
        self.momentum = momentum

    @property
    def places_anything(self) -> bool:
        """Whether the plan names any place to quantize (``feature_map=false`` and no
        ``patterns`` quantize nothing: the float detector)."""
        return self.feature_map or bool(self.patterns)

    def apply(self, detector: nn.Module) -> list[str]:
        make = self.quantizer
        if self.step_rule == "ema":
            make = partial(self.quantizer, momentum=self.momentum)
        return insert_quantizers(
            detector, make, feature_map=self.feature_map, patterns=self.patterns
        )
