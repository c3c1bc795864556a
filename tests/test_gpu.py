"""On a CUDA device (``make gpu-check``; deselected by default, ``-m gpu`` selects them)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from helpers import TINY_DETECTOR
from qmimic.models import build_detector
from qmimic.modules import DistillModule
from qmimic.quant import FeatureQuantizer, insert_quantizers

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
IMAGES = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)) for i in range(2)]
TARGETS = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([2])}] * 2


def distill_module() -> DistillModule:
    torch.manual_seed(0)
    teacher = build_detector(width=0.125, **TINY_DETECTOR)
    insert_quantizers(teacher, partial(FeatureQuantizer, step=0.5))
    student = build_detector(width=1 / 16, **TINY_DETECTOR)
    insert_quantizers(student, partial(FeatureQuantizer, step=0.5, momentum=0.9))
    return DistillModule(student, teacher, optimizer=partial(torch.optim.SGD, lr=0.01))


def test_the_unregistered_teacher_follows_the_module_to_the_gpu():
    module = distill_module().cuda()
    assert all(p.is_cuda for p in module.teacher.parameters())
    assert module.mimic_quantizer.step.is_cuda and module.net.neck.step.is_cuda


def test_a_distillation_step_on_the_gpu_matches_the_cpu():
    cpu = distill_module().train()
    gpu = distill_module().train().cuda()
    torch.manual_seed(1)
    on_cpu = cpu.detection_losses(IMAGES, TARGETS)
    torch.manual_seed(1)
    on_gpu = gpu.detection_losses(
        [i.cuda() for i in IMAGES], [{k: v.cuda() for k, v in t.items()} for t in TARGETS]
    )
    sum(on_gpu.values()).backward()
    assert gpu.regressor.weight.grad is not None
    assert torch.isfinite(on_gpu["loss_mimic"])
    torch.testing.assert_close(on_gpu["loss_objectness"].cpu(), on_cpu["loss_objectness"],
                               rtol=1e-3, atol=1e-4)  # fmt: skip


def test_detections_on_the_gpu_match_the_cpu():
    torch.manual_seed(0)
    detector = build_detector(width=0.125, **TINY_DETECTOR).eval()
    with torch.no_grad():
        on_cpu = detector.predict(IMAGES)
        on_gpu = detector.cuda().predict([i.cuda() for i in IMAGES])
    for c, g in zip(on_cpu, on_gpu, strict=True):
        assert torch.equal(c["labels"], g["labels"].cpu())
        torch.testing.assert_close(g["boxes"].cpu(), c["boxes"], rtol=1e-3, atol=1e-2)


def test_the_quantizer_follows_its_features_on_the_gpu():
    q = FeatureQuantizer(step=1.0, momentum=0.5, calibration_percentile=100.0,
                         calibration_levels=5).cuda().train()  # fmt: skip
    q.calibrated.fill_(True)
    q(torch.linspace(0, 8, 101, device="cuda"))
    assert float(q.step) == pytest.approx(1.5)
