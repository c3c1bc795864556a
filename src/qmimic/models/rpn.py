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

    What differs from torchvision, with the same proposals in the same order: NMS stops once the
    post-NMS budget is kept (:func:`~qmimic.models.proposal_nms.top_nms`), only the
    ``pre_nms_top_n`` best anchors are decoded (:meth:`best_proposals`), and eager calls reuse
    the anchors of recent image sizes (:meth:`anchors`).
    """

    _ANCHOR_SIZES_KEPT = 8  # padded image sizes whose anchors stay cached

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._anchor_cache: dict[tuple, Tensor] = {}

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
        top_logits, top_index = self._top_anchors(objectness, proposals.shape[0])
        batch = torch.arange(proposals.shape[0], device=proposals.device)[:, None]
        return self._kept(proposals[batch, top_index], top_logits, image_shapes)

    def best_proposals(
        self,
        deltas: Tensor,
        objectness: Tensor,
        anchors: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """:meth:`filter_proposals` of the decoded anchors, decoding only the ``pre_nms_top_n``
        best of each image (the others are never looked at; decoding is row by row, so the
        chosen boxes are the ones decoding all would give).

        ``deltas`` ``[B * A, 4]`` and ``objectness`` logits ``[B * A, 1]`` as
        ``concat_box_prediction_layers`` returns them, ``anchors`` per image ``[A, 4]``.
        """
        count = len(anchors)
        top_logits, top_index = self._top_anchors(objectness, count)
        batch = torch.arange(count, device=deltas.device)[:, None]
        chosen_deltas = deltas.reshape(count, -1, 4)[batch, top_index].reshape(-1, 4)
        chosen_anchors = torch.stack(anchors)[batch, top_index].reshape(-1, 4)
        boxes = self.box_coder.decode_single(chosen_deltas, chosen_anchors)
        return self._kept(boxes.view(count, -1, 4), top_logits, image_shapes)

    def _top_anchors(self, objectness: Tensor, images: int) -> tuple[Tensor, Tensor]:
        """The ``pre_nms_top_n`` largest logits per image and their anchor indices, both
        ``[B, K]``, by decreasing logit."""
        logits = objectness.detach().reshape(images, -1)
        count = det_utils._topk_min(logits, self.pre_nms_top_n(), 1)
        return logits.topk(count, dim=1)  # sorted: scores non-increasing

    def _kept(
        self, chosen: Tensor, top_logits: Tensor, image_shapes: list[tuple[int, int]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image, of its best boxes ``chosen`` ``[B, K, 4]`` (logits ``[B, K]``, by
        decreasing logit): clipped, small and low-scoring ones dropped, the first
        ``post_nms_top_n`` NMS keeps; boxes ``[P, 4]`` and probabilities ``[P]``."""
        final_boxes, final_scores = [], []
        for boxes, scores, shape in zip(
            chosen, torch.sigmoid(top_logits), image_shapes, strict=True
        ):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            boxes, scores = boxes[keep], scores[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores = boxes[keep], scores[keep]
            keep = top_nms(boxes, scores, self.nms_thresh, self.post_nms_top_n())
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    def anchors(self, images: ImageList, features: Tensor) -> list[Tensor]:
        """The anchor generator's anchors per image, ``[A, 4]`` each (one tensor shared by all
        images of the batch: not to be written in place).

        They depend only on the generator, the padded batch size, the map size, dtype and
        device, so eager calls reuse the anchors of the last few such keys (for the same-sized
        images of inference, computing them was a cost of every call); moving or casting the
        module empties the cache. Traced and scripted calls build them in the graph. The cache
        is not locked: one module is not meant to run in several threads at once.
        """
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            return self.anchor_generator(images, [features])
        # inference tensors (made under torch.inference_mode) are kept apart from the others
        key = (
            id(self.anchor_generator), *images.tensors.shape[-2:], *features.shape[-2:],
            features.dtype, features.device, torch.is_inference_mode_enabled(),
        )  # fmt: skip
        cache = self._anchor_cache
        anchors = cache.pop(key, None)  # re-inserted below: the least recently used go first
        if anchors is None:
            single = ImageList(images.tensors[:1], images.image_sizes[:1])
            anchors = self.anchor_generator(single, [features[:1]])[0]
        cache[key] = anchors
        while len(cache) > self._ANCHOR_SIZES_KEPT:
            cache.pop(next(iter(cache)), None)
        return [anchors] * len(images.image_sizes)

    def _apply(self, fn, recurse=True):
        self._anchor_cache.clear()  # .to(), .half() and the like: anchors are made anew
        return super()._apply(fn, recurse)

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
        objectness, deltas = self.head([features])
        anchors = self.anchors(images, features)
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        # Faster R-CNN does not back-propagate through proposal coordinates.
        proposals, _ = self.best_proposals(deltas.detach(), objectness, anchors, images.image_sizes)
        if targets is None:
            return proposals, {}
        labels, matched_boxes = self.assign_targets_to_anchors(anchors, targets)
        regression_targets = self.box_coder.encode(matched_boxes, anchors)
        loss_objectness, loss_box = self.compute_loss(
            objectness, deltas, labels, regression_targets
        )
        return proposals, {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
