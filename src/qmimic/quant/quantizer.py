"""Uniform feature quantization with a straight-through gradient (Wei et al., ECCV 2018).

Features after a ReLU are mapped onto the dictionary ``D = {0, s, 2s, ...}``: a value goes to the
nearest level, and a value exactly half-way goes to the lower one, as in the paper's definition
``Q(f) = beta  if (alpha + beta) / 2 < f <= (beta + gamma) / 2``. Weights are not quantized.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qmimic.errors import UserError

GRADIENTS = ("identity", "clipped")


class QuantizerSettingError(UserError, ValueError):
    """A quantizer setting that cannot work; the message names the ``quant`` config key."""


class CalibrationError(UserError):
    """Calibration could not set a step from what it saw; the message says what to change."""


class _StraightThrough(torch.autograd.Function):
    """``quantize(x)`` forward, identity backward. Written as a Function rather than
    ``x + (q - x).detach()`` because that costs two extra passes over the tensor forward and one
    backward, which shows on the mimic loss's region tensors."""

    @staticmethod
    def forward(x: Tensor, quantize) -> Tensor:
        return quantize(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class FeatureQuantizer(nn.Module):
    """Quantize a feature map ``[B, C, H, W]`` (any shape) onto ``{0, s, ..., (L - 1) s}``.

    Args:
        step: the level spacing ``s`` (> 0). Replaced by calibration when that runs.
        num_levels: ``L``; values above the top level ``(L - 1) s`` clip to it. ``None``: no top.
        gradient: straight-through rule. ``"identity"`` passes the gradient unchanged;
            ``"clipped"`` passes it only where the input lies inside ``[0, (L - 1) s]``.
        enabled: when False the module is the identity (a float baseline with the same weights).
        calibration_percentile: percentile of the observed values that calibration maps to the
            top level (the ``calibration_levels``-th level).
        calibration_levels: number of levels spanned by that percentile; defaults to
            ``num_levels``, else 16.
        momentum: ``None`` keeps the step fixed between calibrations. A number ``m`` in
            [0, 1) makes a calibrated quantizer follow its input while the module is in
            training mode: each forward moves the step to ``m * s + (1 - m) * s_batch``, where
            ``s_batch`` is the step calibration would set from that batch alone. Eval mode never
            moves it. Under DDP each process moves its own copy and DDP's buffer broadcast
            hands every process rank 0's step before the next forward.

    Calibration: call :meth:`start_calibration`, run batches through the module (outputs pass
    through unchanged meanwhile), then :meth:`finish_calibration`, which sets
    ``s = mean percentile / (calibration_levels - 1)``.
    """

    def __init__(
        self,
        step: float = 1.0,
        num_levels: int | None = None,
        gradient: str = "identity",
        enabled: bool = True,
        calibration_percentile: float = 99.9,
        calibration_levels: int | None = None,
        momentum: float | None = None,
    ):
        super().__init__()
        if step <= 0:
            raise QuantizerSettingError(f"quant.quantizer.step must be positive, got {step}")
        if num_levels is not None and num_levels < 2:
            raise QuantizerSettingError(
                f"quant.quantizer.num_levels must be >= 2 (or null), got {num_levels}"
            )
        if gradient not in GRADIENTS:
            raise QuantizerSettingError(
                f"quant.quantizer.gradient must be one of {GRADIENTS}, got {gradient!r}"
            )
        if not 0 < calibration_percentile <= 100:
            raise QuantizerSettingError(
                "quant.quantizer.calibration_percentile must be in (0, 100], got "
                f"{calibration_percentile}"
            )
        if momentum is not None and not 0 <= momentum < 1:
            raise QuantizerSettingError(f"quant.momentum must be in [0, 1), got {momentum}")
        self.register_buffer("step", torch.tensor(float(step)))
        self.register_buffer("calibrated", torch.tensor(False))
        self.num_levels = num_levels
        self.gradient = gradient
        self.enabled = enabled
        self.calibration_percentile = calibration_percentile
        self.calibration_levels = calibration_levels or num_levels or 16
        self.momentum = momentum
        self._observed: list[Tensor] | None = None

    def extra_repr(self) -> str:
        return (
            f"step={float(self.step):.4g}, num_levels={self.num_levels}, "
            f"gradient={self.gradient}, enabled={self.enabled}, momentum={self.momentum}"
        )

    def frozen_copy(self) -> FeatureQuantizer:
        """A new quantizer computing the same function (step, levels, gradient rule) whose step
        never moves: calibrated, no momentum. The mimic loss quantizes with such a copy of the
        teacher's quantizer."""
        copy = FeatureQuantizer(
            step=float(self.step), num_levels=self.num_levels, gradient=self.gradient
        )
        copy.calibrated.fill_(True)
        return copy.to(self.step.device)

    @property
    def top(self) -> Tensor | None:
        """The highest level ``(L - 1) s``, or None without a level count."""
        return None if self.num_levels is None else self.step * (self.num_levels - 1)

    def quantize(self, x: Tensor) -> Tensor:
        """Forward values only (no gradient rule): nearest level, ties to the lower level."""
        levels = (x / self.step).sub_(0.5).ceil_().clamp_(min=0)  # one new tensor, then in place
        if self.num_levels is not None:
            levels = levels.clamp_(max=self.num_levels - 1)
        return levels.mul_(self.step)

    def forward(self, x: Tensor) -> Tensor:
        if self._observed is not None:
            self._observe(x)
            return x
        if not self.enabled:
            return x
        if self.training and self.momentum is not None and bool(self.calibrated):
            self._follow(x)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self.quantize(x)  # plain tensor ops: what inference and ONNX export see
        if self.gradient == "clipped":
            # clamp has zero gradient outside the range, which is the clipped straight-through rule
            x = x.clamp(min=0) if self.top is None else torch.minimum(x.clamp(min=0), self.top)
        return _StraightThrough.apply(x, self.quantize)

    # ------------------------------------------------------------------ calibration

    def start_calibration(self) -> None:
        self._observed = []

    def _percentile(self, x: Tensor) -> Tensor:
        """The calibration percentile of ``x``'s values (0-d)."""
        values = x.detach().flatten().float()
        if values.numel() > 1_000_000:  # torch.quantile has an input size limit; thin evenly
            values = values[:: -(-values.numel() // 1_000_000)]
        return torch.quantile(values, self.calibration_percentile / 100.0)

    def _observe(self, x: Tensor) -> None:
        self._observed.append(self._percentile(x))

    @torch.no_grad()
    def _follow(self, x: Tensor) -> None:
        """Move the step towards the one this batch alone would calibrate (see ``momentum``)."""
        batch_step = self._percentile(x) / (self.calibration_levels - 1)
        moved = self.momentum * self.step + (1 - self.momentum) * batch_step
        # an all-zero batch says nothing about the scale (and a where() keeps the GPU unsynced)
        self.step.copy_(torch.where(batch_step > 0, moved, self.step))

    def finish_calibration(self) -> float:
        """Set ``step`` from the observed batches; returns the new step."""
        if not self._observed:
            raise CalibrationError(
                "calibration saw no batch: set quant.calibration_batches to 1 or more and give "
                "the training split at least one image"
            )
        percentile = torch.stack(self._observed).mean()
        self._observed = None
        step = float(percentile) / (self.calibration_levels - 1)
        if step <= 0:
            raise CalibrationError(
                "calibration saw only features <= 0 (a dead feature map?), so no step can be "
                "set: raise quant.quantizer.calibration_percentile, or give the step with "
                "quant.quantizer.step=... and quant.calibration_batches=0"
            )
        self.step.fill_(step)
        self.calibrated.fill_(True)
        return step
