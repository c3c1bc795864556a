"""How closely a student's features match its teacher's on the teacher's quantization grid.

Wei et al. (ECCV 2018) report this diagnostic for Quantization Mimic: the share of RoI feature
elements where the student's quantized feature equals the teacher's (58.2% with plain mimic,
62.1% with Quantization Mimic, from a secondary source). Written as a torchmetrics ``Metric``
so that its sums gather across DDP processes like every other validation metric.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric

from qmimic.metrics.names import MIMIC_DISTANCE, MIMIC_MATCH


def _flat(regions: Tensor | list[Tensor]) -> Tensor:
    if isinstance(regions, Tensor):
        return regions.reshape(-1)
    if not regions:
        return torch.zeros(0)
    return torch.cat([r.reshape(-1) for r in regions])


class MimicAgreement(Metric):
    """Match rate and distance between teacher and student region features.

    ``update(teacher, student, quantize, step)`` takes the teacher's float region features
    ``f_t`` and the student's mapped ones ``r(f_s)`` at the same boxes (``[R, C, S, S]`` each,
    or equal lists of ``[C, h, w]`` crops), the quantizer ``Q`` and its step ``s``.
    ``compute()`` returns ``mimic_match``, the share of elements where ``Q(r(f_s)) == Q(f_t)``
    (the same level), and ``mimic_distance``, the mean ``|r(f_s) - f_t| / s`` (in steps).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("matched", "distance", "elements"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64),
                           dist_reduce_fx="sum")  # fmt: skip

    def update(
        self,
        teacher: Tensor | list[Tensor],
        student: Tensor | list[Tensor],
        quantize: Callable[[Tensor], Tensor],
        step: float,
    ) -> None:
        t, s = _flat(teacher).float(), _flat(student).float()
        if t.shape != s.shape:
            raise ValueError(f"teacher and student regions differ: {t.shape} vs {s.shape}")
        self.matched += (quantize(t) == quantize(s)).sum().double()
        self.distance += ((s - t).abs().sum() / step).double()
        self.elements += t.numel()

    def compute(self) -> dict[str, Tensor]:
        elements = self.elements.clamp(min=1)
        return {
            MIMIC_MATCH: (self.matched / elements).float(),
            MIMIC_DISTANCE: (self.distance / elements).float(),
        }
