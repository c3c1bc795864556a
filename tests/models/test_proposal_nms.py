"""Early-stopping NMS gives torchvision's proposals exactly: same boxes, same order."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import batched_nms, nms

from helpers import TINY_DETECTOR
from qmimic.models import build_detector
from qmimic.models.proposal_nms import top_class_nms, top_nms


def random_boxes(count: int, generator: torch.Generator, size: float = 600.0) -> torch.Tensor:
    corner = torch.rand(count, 2, generator=generator) * size
    extent = torch.rand(count, 2, generator=generator) * 120 + 2
    return torch.cat([corner, corner + extent], 1)


def boxes_and_scores(
    seed: int, values: int | None, count: int = 6000
) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """``count`` random boxes and scores, the scores rounded down to ``values`` distinct levels
    when given (long runs of equal scores, as saturated sigmoids give), and the generator."""
    generator = torch.Generator().manual_seed(seed)
    boxes = random_boxes(count, generator)
    scores = torch.rand(count, generator=generator)
    if values is not None:
        scores = (scores * values).floor() / values
    return boxes, scores, generator


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_top_nms_equals_the_full_nms_cut(seed: int, ties: bool):
    boxes, scores, _ = boxes_and_scores(seed, 8 if ties else None)
    scores, order = scores.sort(descending=True, stable=True)
    boxes = boxes[order]
    levels = torch.zeros(6000, dtype=torch.long)
    for top_n in (1, 50, 300, 5000, 7000):
        kept = top_nms(boxes, scores, 0.7, top_n)
        assert torch.equal(kept, nms(boxes, scores, 0.7)[:top_n])
        assert_same_but_tie_order(kept, batched_nms(boxes, scores, levels, 0.7)[:top_n], scores)


def assert_same_but_tie_order(kept: torch.Tensor, reference: torch.Tensor, scores: torch.Tensor):
    """``kept`` equals torchvision's ``batched_nms`` cut, up to the order among equal scores:
    for more than 1,000 boxes torchvision re-sorts its kept boxes with a non-stable sort, so its
    order (and, at the cut, its choice) among equal scores is unspecified."""
    assert torch.equal(scores[kept], scores[reference])  # the same scores, position by position
    above = scores[kept] != scores[kept[-1]]  # above the group of the last score kept
    tied = torch.zeros(len(kept), dtype=torch.bool)
    values, counts = torch.unique_consecutive(scores[kept], return_counts=True)
    for value, count in zip(values, counts, strict=True):
        if count > 1:
            tied |= scores[kept] == value
    assert torch.equal(kept[above & ~tied], reference[above & ~tied])
    for value in values[counts > 1]:  # within a tie group above the cut: the same boxes
        group = (scores[kept] == value) & above
        assert set(kept[group].tolist()) == set(reference[group].tolist())


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_top_class_nms_equals_the_full_batched_nms_cut(seed: int, ties: bool):
    """The region head's case: 300 proposals x 20 classes, scores in any order."""
    boxes, scores, generator = boxes_and_scores(seed, 64 if ties else None)
    labels = torch.randint(1, 21, (6000,), generator=generator)
    for top_n in (1, 100, 300, 7000):
        kept = top_class_nms(boxes, scores, labels, 0.5, top_n)
        reference = batched_nms(boxes, scores, labels, 0.5)[:top_n]
        assert len(kept) == min(top_n, len(batched_nms(boxes, scores, labels, 0.5)))
        # float32 draws tie too (2 of 6,000 here): compare up to the order among equal scores
        assert_same_but_tie_order(kept, reference, scores)
    assert top_class_nms(boxes[:0], scores[:0], labels[:0], 0.5, 100).shape == (0,)


def test_unsorted_scores_fall_back_to_one_plain_nms():
    generator = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(500, generator), torch.rand(500, generator=generator)
    assert torch.equal(top_nms(boxes, scores, 0.5, 40), nms(boxes, scores, 0.5)[:40])
    assert top_nms(boxes[:0], scores[:0], 0.5, 40).shape == (0,)


@pytest.mark.parametrize("saturated", [False, True])
def test_the_rpn_selects_what_torchvision_selects(saturated: bool):
    """The paper's test budget (6,000 -> 300) on one 600x1000 image's anchors."""
    detector = build_detector(
        arch="resnet18",
        width=0.0625,
        **{**TINY_DETECTOR, "rpn_pre_nms_top_n_test": 6000, "rpn_post_nms_top_n_test": 300},
    ).eval()
    rpn = detector.rpn
    generator = torch.Generator().manual_seed(1)
    anchors = 38 * 63 * 9
    proposals = random_boxes(2 * anchors, generator, size=900.0).reshape(2, anchors, 4)
    logits = torch.randn(2 * anchors, 1, generator=generator) * 3
    if saturated:  # large logits: many probabilities of exactly 1.0
        logits = logits * 20
    shapes = [(600, 1000), (600, 1000)]
    ours = rpn.filter_proposals(proposals, logits, shapes, [anchors])
    theirs = RegionProposalNetwork.filter_proposals(rpn, proposals, logits, shapes, [anchors])
    assert [len(b) for b in ours[0]] == [300, 300]
    for boxes, scores, ref_boxes, ref_scores in zip(*ours, *theirs, strict=True):
        assert torch.equal(scores, ref_scores)
        same = scores < 1.0  # torchvision's order among equal scores is unspecified
        if saturated:
            assert int((~same).sum()) > 1
            if bool(same.any()):  # the group of 1.0 ends above the cut: the same boxes in it
                assert set(map(tuple, boxes[~same].tolist())) == set(
                    map(tuple, ref_boxes[~same].tolist())
                )
        assert torch.equal(boxes[same], ref_boxes[same])


def test_region_head_post_processing_is_torchvisions():
    """The head's own post-processing (bounded NMS when traced) equals torchvision's eagerly."""
    from torchvision.models.detection.roi_heads import RoIHeads

    torch.manual_seed(0)
    head = build_detector(width=1 / 16, **TINY_DETECTOR).eval().roi_heads
    generator = torch.Generator().manual_seed(0)
    proposals = [random_boxes(40, generator, 90.0), random_boxes(25, generator, 90.0)]
    logits = torch.randn(65, 7, generator=generator) * 2
    deltas = torch.randn(65, 28, generator=generator) * 0.3
    shapes = [(96, 96), (80, 96)]
    ours = head.postprocess_detections(logits, deltas, proposals, shapes)
    theirs = RoIHeads.postprocess_detections(head, logits, deltas, proposals, shapes)
    assert sum(len(b) for b in ours[0]) > 20
    for mine, reference in zip(ours, theirs, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(mine, reference, strict=True))
