"""LightningModule for (Quantization) Mimic: a student trained against a frozen teacher."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from qmimic.errors import UserError
from qmimic.models.detector import TwoStageDetector
from qmimic.modules.detector_module import (
    DetectorModule,
    OptimizerFactory,
    SchedulerFactory,
    training_targets,
)
from qmimic.modules.mimic import REGION_READS, mimic_loss, native_crops, read_regions
from qmimic.quant import FeatureQuantizer
from qmimic.runs.checkpoints import load_run

REGION_SOURCES = ("student", "teacher", "gt")


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode: a module that only ever computes targets."""
    module.requires_grad_(False)
    return module.eval()


class DistillModule(DetectorModule):
    """Detection losses of the student plus ``mimic_weight * L_m`` against a frozen teacher.

    ``L_m = 1/(2N) sum_i || Q(f_t^i) - Q(r(f_s^i)) ||^2`` over N regions, where ``f^i`` are
    features of region ``i`` read at the same boxes on the teacher's and the student's feature
    maps, ``r`` is a 1x1 convolution from student to teacher channels and ``Q`` the uniform
    quantizer with the teacher's step (either side switchable). With both switches off this is
    the plain mimic of Li et al. The student's own feature map is quantized by whatever
    quantizer sits in its ``neck`` (the ``quant`` config group).

    The teacher is loaded from ``teacher_ckpt`` (its architecture comes from the config saved in
    it), frozen (no gradients, eval mode re-asserted every epoch), and deliberately NOT registered
    as a submodule: it stays out of the optimizer, out of DDP and out of every student checkpoint.

    Args:
        net: the student detector.
        teacher_ckpt: checkpoint written by ``qmimic.train`` (stage 1 or stage 2).
        mimic_weight: ``lambda``.
        regions: ``"student"`` (the regions the student's RoI head samples from its RPN
            proposals in this step, ground truth included, so the head's RoIAlign output is
            mimicked directly and the student's map is read once), ``"teacher"`` (the teacher's
            top proposals) or ``"gt"`` (ground-truth boxes).
        regions_per_image: with ``regions="teacher"``, this many top-scoring teacher proposals
            per image are mimicked (the student's sampled regions number
            ``model.box_batch_size_per_image``).
        region_read: ``"roi_align"`` (fixed ``roi_size`` grid) or ``"native"`` (the feature cells
            each box covers, no resampling).
        quantize_teacher, quantize_student: apply ``Q`` to each side of the mimic loss.
        mimic_step: step of ``Q``; ``None`` takes the teacher's feature quantizer step (or 1.0
            for a float teacher).
        normalize: divide each region's squared error by its element count.
    """

    def __init__(
        self,
        net: TwoStageDetector,
        teacher_ckpt: str,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        mimic_weight: float = 1.0,
        regions: str = "student",
        regions_per_image: int = 64,
        region_read: str = "roi_align",
        roi_size: int = 7,
        quantize_teacher: bool = True,
        quantize_student: bool = True,
        mimic_step: float | None = None,
        normalize: bool = True,
        eval_protocol: str = "voc",
        metric_backend: str = "faster_coco_eval",
        non_finite_steps: int = 0,
    ):
        if regions not in REGION_SOURCES:
            raise UserError(f"module.regions must be one of {REGION_SOURCES}, got {regions!r}")
        if region_read not in REGION_READS:
            raise UserError(
                f"module.region_read must be one of {REGION_READS}, got {region_read!r}"
            )
        if not mimic_weight >= 0:  # also refuses NaN
            raise UserError(
                f"module.mimic_weight must be 0 or more, got {mimic_weight}; the paper uses 1 "
                "(0 trains the student alone)"
            )
        super().__init__(net, optimizer, scheduler, eval_protocol, metric_backend, non_finite_steps)
        teacher = freeze(load_run(teacher_ckpt).detector)
        if teacher.stride != net.stride:
            raise UserError(
                f"the teacher in {teacher_ckpt} has feature stride {teacher.stride} but the "
                f"student {net.stride}: one box must address the same region on both maps; "
                "use a teacher of the student's architecture family"
            )
        object.__setattr__(self, "_teacher", teacher)  # unregistered on purpose (see docstring)
        self.teacher_ckpt = str(Path(teacher_ckpt).expanduser())
        self.regressor = nn.Conv2d(net.feature_channels, teacher.feature_channels, kernel_size=1)
        if mimic_step is None:
            step = teacher.feature_step
            mimic_step = 1.0 if step is None else step
        self.mimic_quantizer = FeatureQuantizer(step=mimic_step)
        self.mimic_weight = mimic_weight
        self.regions = regions
        self.regions_per_image = regions_per_image
        self.region_read = region_read
        self.roi_size = roi_size
        self.quantize_teacher = quantize_teacher
        self.quantize_student = quantize_student
        self.normalize = normalize
        # Read regions as the student's head reads them, so reused and read regions agree.
        self.sampling_ratio = net.roi_sampling_ratio

    @property
    def teacher(self) -> TwoStageDetector:
        return self._teacher

    def _apply(self, fn, *args, **kwargs):
        # .to(device) / .double() reach the unregistered teacher too.
        super()._apply(fn, *args, **kwargs)
        self._teacher._apply(fn, *args, **kwargs)
        return self

    def on_train_epoch_start(self) -> None:
        freeze(self.teacher)  # Lightning puts registered modules in train mode; be explicit

    def _teacher_boxes(self, batch, targets, teacher_map) -> list[Tensor]:
        if self.regions == "gt":
            return [t["boxes"] for t in targets]
        proposals, _ = self.teacher.proposals(batch, self.teacher.apply_neck(teacher_map))
        return [p[: self.regions_per_image].detach() for p in proposals]

    def _can_reuse(self, pooled: Tensor | None) -> bool:
        """Whether the head's pooled regions are what :meth:`_read` would return."""
        return (
            pooled is not None
            and self.region_read == "roi_align"
            and tuple(pooled.shape[-2:]) == (self.roi_size, self.roi_size)
        )

    def _read(self, features: Tensor, boxes: list[Tensor]) -> Tensor | list[Tensor]:
        stride = self.net.stride  # the teacher's too (checked on construction)
        if self.region_read == "native":
            return native_crops(features, boxes, stride=stride)
        return read_regions(
            features,
            boxes,
            stride=stride,
            output_size=self.roi_size,
            sampling_ratio=self.sampling_ratio,
        )

    def _student_side(self, regions: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
        def one(x: Tensor) -> Tensor:
            mapped = self.regressor(x)
            return self.mimic_quantizer(mapped) if self.quantize_student else mapped

        if isinstance(regions, Tensor):
            return one(regions)
        return [one(r[None])[0] for r in regions]

    def detection_losses(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """Student detection losses and ``loss_mimic`` (already weighted), one shared forward."""
        batch, resized = self.net.prepare(images, training_targets(targets))
        student_map = self.net.features(batch)
        proposals, rpn_losses = self.net.proposals(batch, student_map, resized)
        roi_losses, sampled = self.net.roi_losses_and_regions(
            batch, student_map, proposals, resized
        )
        losses = rpn_losses | roi_losses
        with torch.no_grad():
            teacher_map = self.teacher.raw_features(batch)
            if self.regions == "student":
                boxes = [b.detach() for b in sampled.boxes]
            else:
                boxes = self._teacher_boxes(batch, resized, teacher_map)
            if self.quantize_teacher:
                teacher_map = self.mimic_quantizer(teacher_map)
            teacher_regions = self._read(teacher_map, boxes)
        if self.regions == "student" and self._can_reuse(sampled.pooled):
            student_regions = sampled.pooled  # the head's own RoIAlign output: read once
        else:
            student_regions = self._read(student_map, boxes)
        student_regions = self._student_side(student_regions)
        mimic = mimic_loss(teacher_regions, student_regions, normalize=self.normalize)
        losses["loss_mimic"] = self.mimic_weight * mimic
        return losses
