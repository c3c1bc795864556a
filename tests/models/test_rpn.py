"""The RPN's shortcuts against the computation they replace: decoding only the best anchors,
anchors cached per image size."""

from __future__ import annotations

import torch
from torchvision.models.detection.image_list import ImageList

from helpers import TINY_DETECTOR
from qmimic.models import build_detector


def _rpn():
    detector = build_detector(
        arch="resnet18",
        width=0.0625,
        **{**TINY_DETECTOR, "rpn_pre_nms_top_n_test": 600, "rpn_post_nms_top_n_test": 50},
    ).eval()
    return detector.rpn


def _batch(height: int, width: int, images: int = 2) -> tuple[ImageList, torch.Tensor]:
    tensors = torch.zeros(images, 3, height, width)
    features = torch.zeros(images, 16, height // 16, width // 16)
    return ImageList(tensors, [(height, width)] * images), features


def test_decoding_the_best_anchors_only_gives_the_proposals_of_decoding_all():
    rpn = _rpn()
    batch, features = _batch(320, 480)
    anchors = rpn.anchors(batch, features)
    generator = torch.Generator().manual_seed(0)
    total = sum(len(a) for a in anchors)
    deltas = torch.randn(total, 4, generator=generator) * 0.5
    logits = torch.randn(total, 1, generator=generator) * 3
    ours = rpn.best_proposals(deltas, logits, anchors, batch.image_sizes)
    decoded = rpn.box_coder.decode(deltas, anchors).view(len(anchors), -1, 4)
    theirs = rpn.filter_proposals(decoded, logits, batch.image_sizes, [len(anchors[0])])
    assert [len(b) for b in ours[0]] == [50, 50]
    for mine, reference in zip(ours[0] + ours[1], theirs[0] + theirs[1], strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-4)


def test_cached_anchors_equal_the_generators_for_each_size():
    rpn = _rpn()
    for height, width in [(320, 480), (480, 320), (320, 480)]:
        batch, features = _batch(height, width)
        expected = rpn.anchor_generator(batch, [features])
        got = rpn.anchors(batch, features)
        assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert len(rpn._anchor_cache) == 2


def test_the_anchor_cache_is_bounded_and_keeps_inference_tensors_apart():
    rpn = _rpn()
    for step in range(12):
        rpn.anchors(*_batch(160 + 32 * step, 320))
    assert len(rpn._anchor_cache) == rpn._ANCHOR_SIZES_KEPT
    batch, features = _batch(320, 480)
    with torch.inference_mode():
        inside = rpn.anchors(batch, features)[0]
    outside = rpn.anchors(batch, features)[0]
    assert inside.is_inference() and not outside.is_inference()
    assert torch.equal(inside, outside)


def test_the_least_recently_used_anchors_go_first_and_moving_the_module_empties_the_cache():
    rpn = _rpn()
    first = _batch(160, 320)
    rpn.anchors(*first)
    for step in range(1, 12):
        rpn.anchors(*first)  # used again every time: stays
        rpn.anchors(*_batch(160 + 32 * step, 320))
    kept = {key[1:3] for key in rpn._anchor_cache}
    assert len(kept) == rpn._ANCHOR_SIZES_KEPT and (160, 320) in kept
    rpn.to(torch.float64)
    assert rpn._anchor_cache == {}
