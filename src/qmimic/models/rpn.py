"""Region proposal network with losses on request instead of on ``self.training``."""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers


class ProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN over one feature map, with an explicit ``propose`` call.

    The module mode still picks the proposal budget (``pre/post_nms_top_n`` "training" vs
    "testing"), as in torchvision; whether losses are computed depends only on ``targets``.
    """

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
