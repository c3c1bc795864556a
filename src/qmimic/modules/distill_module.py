"""LightningModule for (Quantization) Mimic: a student trained against a frozen teacher."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qmimic.errors import UserError
from qmimic.log import get_logger
from qmimic.metrics.mimic_agreement import MimicAgreement
from qmimic.metrics.names import VAL, key
from qmimic.models.detector import TwoStageDetector
from qmimic.modules.detector_module import (
    DetectorModule,
    OptimizerFactory,
    SchedulerFactory,
    training_targets,
)
from qmimic.modules.mimic import REGION_READS, Regions, mimic_loss, native_crops, read_regions
from qmimic.quant import FeatureQuantizer
from qmimic.quant.calibration import calibrate

REGION_SOURCES = ("student", "teacher", "gt")
# Where the teacher side of L_m is quantized: on the region features it reads (the paper's
# Q(f_t^i): every target on the level grid) or on the whole map before reading (an ablation:
# RoIAlign then averages neighbouring levels, so most targets fall between levels).
TARGET_QUANTIZATION = ("regions", "map")

log = get_logger(__name__)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode: a module that only ever computes targets."""
    module.requires_grad_(False)
    return module.eval()


def _each(regions: Regions, fn) -> Regions:
    """``fn`` on a ``[R, C, S, S]`` batch of regions, or on each ``[C, h, w]`` crop of a list."""
    if isinstance(regions, Tensor):
        return fn(regions)
    return [fn(r[None])[0] for r in regions]


class DistillModule(DetectorModule):
    """Detection losses of the student plus ``mimic_weight * L_m`` against a frozen teacher.

    ``L_m = 1/(2N) sum_i || Q(f_t^i) - Q(r(f_s^i)) ||^2`` over N regions, where ``f^i`` are
    features of region ``i`` read at the same boxes on the teacher's and the student's feature
    maps, ``r`` is a 1x1 convolution from student to teacher channels and ``Q`` is the teacher's
    own feature quantizer (its step, level count and gradient rule, frozen): both sides of the
    loss are region features on one level grid ``{0, s, 2s, ...}``. Each side's ``Q`` can be
    switched off; with both off this is the plain mimic of Li et al. The teacher side reads the
    teacher's map before its quantizer (the trunk output) and quantizes the regions it read.
    The student's own feature map is quantized by whatever quantizer sits in its ``neck`` (the
    ``quant`` config group, with its step rule).

    The teacher is handed in built and loaded (the training command reads it with
    :func:`~qmimic.io.checkpoints.load_run`), then frozen (no gradients, eval mode re-asserted
    every epoch), and deliberately NOT registered as a submodule: it stays out of the optimizer,
    out of DDP and out of every student checkpoint.

    Validation also measures how closely the student mimics: on the teacher's top
    ``regions_per_image`` proposals of each validation image, ``val/mimic_match`` is the share
    of region feature elements where ``Q(r(f_s)) == Q(f_t)`` and ``val/mimic_distance`` the mean
    ``|r(f_s) - f_t| / s``, with the loss's ``Q`` whatever the switches say. A float teacher has
    no quantizer: plain mimic then measures with a quantizer calibrated on the teacher's map at
    the start of fitting, by the rule the quantized teacher is calibrated with (the 99.9th
    percentile on 16 levels, ``calibration_batches`` training batches).

    Args:
        net: the student detector.
        teacher: the trained teacher detector (stage 1, or the quantized stage 2).
        mimic_weight: ``lambda``.
        regions: ``"student"`` (the regions the student's RoI head samples from its RPN
            proposals in this step, ground truth included, so the head's RoIAlign output is
            mimicked directly and the student's map is read once), ``"teacher"`` (the teacher's
            top proposals) or ``"gt"`` (ground-truth boxes).
        regions_per_image: with ``regions="teacher"``, this many top-scoring teacher proposals
            per image are mimicked (the student's sampled regions number
            ``model.box_batch_size_per_image``); also the regions the match rate is measured on.
        region_read: ``"roi_align"`` (fixed ``roi_size`` grid) or ``"native"`` (the feature cells
            each box covers, no resampling).
        quantize_teacher, quantize_student: apply ``Q`` to each side of the mimic loss; both
            need a teacher with a feature quantizer.
        target_quantization: ``"regions"`` (the paper's loss) or ``"map"`` (ablation: quantize
            the teacher's whole map, then read regions off it).
        normalize: divide each region's squared error by its element count.
        calibration_batches: training batches that calibrate the measuring quantizer of a
            float teacher.
    """

    passed_in = (*DetectorModule.passed_in, "teacher")

    def __init__(
        self,
        net: TwoStageDetector,
        teacher: TwoStageDetector,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        mimic_weight: float = 1.0,
        regions: str = "student",
        regions_per_image: int = 64,
        region_read: str = "roi_align",
        roi_size: int = 7,
        quantize_teacher: bool = True,
        quantize_student: bool = True,
        target_quantization: str = "regions",
        normalize: bool = True,
        calibration_batches: int = 20,
        eval_protocol: str = "voc",
        metric_backend: str = "faster_coco_eval",
        non_finite_steps: int = 0,
    ):
        _check_choice("regions", regions, REGION_SOURCES)
        _check_choice("region_read", region_read, REGION_READS)
        _check_choice("target_quantization", target_quantization, TARGET_QUANTIZATION)
        if not mimic_weight >= 0:  # also refuses NaN
            raise UserError(
                f"module.mimic_weight must be 0 or more, got {mimic_weight}; the paper uses 1 "
                "(0 trains the student alone)"
            )
        if teacher.stride != net.stride:
            raise UserError(
                f"the teacher has feature stride {teacher.stride} but the student {net.stride}: "
                "one box must address the same region on both maps; use a teacher of the "
                "student's architecture family"
            )
        super().__init__(net, optimizer, scheduler, eval_protocol, metric_backend, non_finite_steps)
        teacher = freeze(teacher)
        object.__setattr__(self, "_teacher", teacher)  # unregistered on purpose (see docstring)
        self.regressor = nn.Conv2d(net.feature_channels, teacher.feature_channels, kernel_size=1)
        self.mimic_quantizer = self._loss_quantizer(teacher, quantize_teacher or quantize_student)
        self.mimic_weight = mimic_weight
        self.regions = regions
        self.regions_per_image = regions_per_image
        self.region_read = region_read
        self.roi_size = roi_size
        self.quantize_teacher = quantize_teacher
        self.quantize_student = quantize_student
        self.target_quantization = target_quantization
        self.normalize = normalize
        self.calibration_batches = calibration_batches
        self.agreement = MimicAgreement()
        # Read regions as the student's head reads them, so reused and read regions agree.
        self.sampling_ratio = net.roi_sampling_ratio

    @staticmethod
    def _loss_quantizer(teacher: TwoStageDetector, quantizing: bool) -> FeatureQuantizer:
        """A frozen copy of the teacher's feature quantizer; for a float teacher, an uncalibrated
        quantizer that only measures (calibrated in :meth:`on_fit_start`)."""
        if isinstance(teacher.neck, FeatureQuantizer):
            return teacher.neck.frozen_copy()
        if quantizing:
            raise UserError(
                "the teacher has no feature quantizer, so the mimic loss has no level grid to "
                "quantize onto: distil from the quantized teacher (stage qteacher, e.g. "
                "+experiment=qmimic_<data> teacher_ckpt=QTEACHER/checkpoints/last.ckpt), or set "
                "module.quantize_teacher=false module.quantize_student=false for plain mimic"
            )
        return FeatureQuantizer(calibration_percentile=99.9, calibration_levels=16)

    @property
    def teacher(self) -> TwoStageDetector:
        return self._teacher

    def _apply(self, fn, *args, **kwargs):
        # .to(device) / .double() reach the unregistered teacher too.
        super()._apply(fn, *args, **kwargs)
        self._teacher._apply(fn, *args, **kwargs)
        return self

    def on_fit_start(self) -> None:
        if bool(self.mimic_quantizer.calibrated) or self.calibration_batches <= 0:
            return  # a quantized teacher's copy, or restored from a checkpoint

        def forward(images: list[Tensor]) -> None:
            images = [image.to(self.device) for image in images]
            self.mimic_quantizer(self.teacher.raw_features(self.teacher.prepare(images)[0]))

        loader = self.trainer.datamodule.train_dataloader()
        (step,) = calibrate([self.mimic_quantizer], forward, loader, self.calibration_batches)
        log.info("float teacher: match rate measured with a calibrated step of %.4g", step)

    def on_train_epoch_start(self) -> None:
        freeze(self.teacher)  # Lightning puts registered modules in train mode; be explicit

    def _teacher_boxes(self, batch, targets, teacher_map) -> list[Tensor]:
        if self.regions == "gt":
            return [t["boxes"] for t in targets]
        return self._top_teacher_proposals(batch, teacher_map)

    def _top_teacher_proposals(self, batch, teacher_map: Tensor) -> list[Tensor]:
        proposals, _ = self.teacher.proposals(batch, self.teacher.apply_neck(teacher_map))
        return [p[: self.regions_per_image].detach() for p in proposals]

    def _can_reuse(self, pooled: Tensor | None) -> bool:
        """Whether the head's pooled regions are what :meth:`_read` would return."""
        return (
            pooled is not None
            and self.region_read == "roi_align"
            and tuple(pooled.shape[-2:]) == (self.roi_size, self.roi_size)
        )

    def _read(self, features: Tensor, boxes: list[Tensor]) -> Regions:
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

    def teacher_targets(self, teacher_map: Tensor, boxes: list[Tensor]) -> Regions:
        """The teacher side of ``L_m``: regions of the teacher's trunk output ``teacher_map``
        at ``boxes``, quantized onto the level grid as ``quantize_teacher`` and
        ``target_quantization`` say."""
        if not self.quantize_teacher:
            return self._read(teacher_map, boxes)
        if self.target_quantization == "map":
            return self._read(self.mimic_quantizer(teacher_map), boxes)
        return _each(self._read(teacher_map, boxes), self.mimic_quantizer)

    def student_side(self, regions: Regions) -> Regions:
        """The student side of ``L_m``: ``Q(r(f_s))`` (``r(f_s)`` without ``quantize_student``)
        for student region features ``[R, C_s, S, S]`` (or a list of crops)."""
        mapped = _each(regions, self.regressor)
        return _each(mapped, self.mimic_quantizer) if self.quantize_student else mapped

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
            targets_on_grid = self.teacher_targets(teacher_map, boxes)
        if self.regions == "student" and self._can_reuse(sampled.pooled):
            student_regions = sampled.pooled  # the head's own RoIAlign output: read once
        else:
            student_regions = self._read(student_map, boxes)
        mimic = mimic_loss(
            targets_on_grid, self.student_side(student_regions), normalize=self.normalize
        )
        losses["loss_mimic"] = self.mimic_weight * mimic
        return losses

    @torch.no_grad()
    def measure_agreement(self, images: list[Tensor]) -> None:
        """Add one batch to the match rate and distance (see the class docstring)."""
        batch, _ = self.net.prepare(images)
        teacher_map = self.teacher.raw_features(batch)
        boxes = self._top_teacher_proposals(batch, teacher_map)
        student = _each(self._read(self.net.features(batch), boxes), self.regressor)
        step = float(self.mimic_quantizer.step)
        self.agreement.update(self._read(teacher_map, boxes), student, self.mimic_quantizer, step)

    def validation_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if batch[0]:
            self.measure_agreement(batch[0])

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.agreement.update_count:
            values = {key(VAL, k): v for k, v in self.agreement.compute().items()}
            self.log_dict(values, sync_dist=True, reduce_fx="max")
        self.agreement.reset()


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"module.{key} must be one of {choices}, got {value!r}")
