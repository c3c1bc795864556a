"""Region proposal network with losses on request instead of on ``self.training``."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.ops import boxes as box_ops

from qmimic.models.proposal_nms import top_nms


class ProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN over one feature map, with an explicit ``propose`` call.

    The module mode still picks the proposal budget (``pre/post_nms_top_n`` "training" vs
    "testing"), as in torchvision; whether losses are computed depends only on ``targets``.

    What differs from torchvision: :meth:`filter_proposals` stops NMS once the post-NMS budget is
    kept (:func:`~qmimic.models.proposal_nms.top_nms`), with the same boxes in the same order.
    """

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's selection for one feature map: the ``pre_nms_top_n`` best-scoring
        proposals per image, clipped, small and low-scoring ones dropped, then the first
        ``post_nms_top_n`` that survive NMS. ``proposals`` ``[B, A, 4]``, ``objectness`` logits
        ``[B * A, 1]``; returns per image the boxes ``[P, 4]`` and their probabilities ``[P]``."""
        if len(num_anchors_per_level) != 1:
            return super().filter_proposals(
                proposals, objectness, image_shapes, num_anchors_per_level
            )
        logits = objectness.detach().reshape(proposals.shape[0], -1)
        count = det_utils._topk_min(logits, self.pre_nms_top_n(), 1)
        top_logits, top_index = logits.topk(count, dim=1)  # sorted: scores non-increasing
        batch = torch.arange(proposals.shape[0], device=proposals.device)[:, None]
        chosen, probabilities = proposals[batch, top_index], torch.sigmoid(top_logits)
        final_boxes, final_scores = [], []
        for boxes, scores, shape in zip(chosen, probabilities, image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            boxes, scores = boxes[keep], scores[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores = boxes[keep], scores[keep]
            keep = top_nms(boxes, scores, self.nms_thresh, self.post_nms_top_n())
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    def propose(
        self,
        images: ImageList,
        features: Tensor,
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals for each image, and the RPN losses when ``targets`` are given.

        Args:
            images: the transformed batch (``images.image_sizes`` are the resized sizes).
            features: the feature map ``[B, C, H/16, W/16]``.
            targets: per image, ``boxes`` ``[M, 4]`` float xyxy in resized-image pixels.

        Returns:
            ``proposals`` (per image ``[P, 4]`` xyxy, detached) and a dict with
            ``loss_objectness`` and ``loss_rpn_box_reg`` (empty without targets).
        """
        maps = [features]
        objectness, deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        anchors_per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        # Faster R-CNN does not back-propagate through proposal coordinates.
        decoded = self.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
        proposals, _ = self.filter_proposals(
            decoded, objectness, images.image_sizes, anchors_per_level
        )
        if targets is None:
            return proposals, {}
        labels, matched_boxes = self.assign_targets_to_anchors(anchors, targets)
        regression_targets = self.box_coder.encode(matched_boxes, anchors)
        loss_objectness, loss_box = self.compute_loss(
            objectness, deltas, labels, regression_targets
        )
        return proposals, {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
