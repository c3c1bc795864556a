"""R-FCN's position-sensitive scoring: bin layout, average voting, class-agnostic boxes."""

import torch
from torch import nn

from qmimic.models.rfcn_head import PositionSensitivePredictor, RFCNHead, position_sensitive_pool

K = 3
NUM_CLASSES = 4


def constant_map_head(class_bias: torch.Tensor, box_bias: torch.Tensor) -> RFCNHead:
    """A head whose score maps are spatially constant, equal to the given biases."""
    predictor = PositionSensitivePredictor(8, NUM_CLASSES, K)
    for conv, bias in ((predictor.class_maps, class_bias), (predictor.box_maps, box_bias)):
        nn.init.zeros_(conv.weight)
        conv.bias.data.copy_(bias)
    return RFCNHead(
        box_roi_pool=position_sensitive_pool(K, stride=16),
        box_head=nn.Identity(),
        box_predictor=predictor,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=8,
        positive_fraction=0.25,
        bbox_reg_weights=None,
        score_thresh=0.0,
        nms_thresh=0.5,
        detections_per_img=10,
    )


def test_class_score_is_the_average_of_its_bins():
    class_bias = torch.randn(NUM_CLASSES * K * K)
    box_bias = torch.randn(4 * K * K)
    head = constant_map_head(class_bias, box_bias)
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [16.0, 8.0, 40.0, 90.0]])]
    logits, deltas = head.scores(torch.rand(1, 8, 8, 8), boxes, [(128, 128)])
    expected = class_bias.view(NUM_CLASSES, K * K).mean(1)
    torch.testing.assert_close(logits, expected.expand(2, -1))
    # Class-agnostic deltas, repeated per class for torchvision's loss and decoding.
    agnostic = box_bias.view(4, K * K).mean(1)
    torch.testing.assert_close(deltas, agnostic.repeat(NUM_CLASSES).expand(2, -1))


def test_bins_are_position_sensitive():
    head = constant_map_head(torch.zeros(NUM_CLASSES * K * K), torch.zeros(4 * K * K))
    # Only the maps of bin (0, 0) see the input, so a region scores only what lies in its
    # top-left third: the same content elsewhere in the region scores nothing.
    head.box_predictor = PositionSensitivePredictor(1, NUM_CLASSES, K)
    nn.init.zeros_(head.box_predictor.class_maps.bias)
    weight = torch.zeros(NUM_CLASSES, K * K)
    weight[:, 0] = 1.0
    head.box_predictor.class_maps.weight.data.copy_(weight.view(-1, 1, 1, 1))
    box = [torch.tensor([[0.0, 0.0, 96.0, 96.0]])]
    top_left, bottom_right = torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)
    top_left[..., :2, :2] = 1.0
    bottom_right[..., 4:, 4:] = 1.0
    logits, _ = head.scores(top_left, box, [(96, 96)])
    torch.testing.assert_close(logits, torch.full((1, NUM_CLASSES), 1 / 9), atol=0.02, rtol=0)
    logits, _ = head.scores(bottom_right, box, [(96, 96)])
    torch.testing.assert_close(logits, torch.zeros(1, NUM_CLASSES), atol=0.02, rtol=0)


def test_losses_and_detections_follow_the_contract():
    head = constant_map_head(torch.randn(NUM_CLASSES * K * K), torch.zeros(4 * K * K))
    features = torch.rand(1, 8, 8, 8)
    proposals = [torch.tensor([[4.0, 4.0, 60.0, 60.0], [30.0, 30.0, 100.0, 120.0]])]
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 60.0, 62.0]]), "labels": torch.tensor([2])}]
    losses = head.losses(features, proposals, [(128, 128)], targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    (detections,) = head.detect(features, proposals, [(128, 128)])
    assert detections["boxes"].shape[1] == 4
    assert (detections["labels"] >= 1).all() and (detections["labels"] < NUM_CLASSES).all()
