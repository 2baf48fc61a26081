"""Pre-processing (resize rule, normalisation, padding) and post-processing on hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detrt.detectors import PreprocessSpec, preprocess
from detrt.detectors.detector import as_image_tensor
from detrt.detectors.postprocess import box_cxcywh_to_xyxy, postprocess_sigmoid_topk, postprocess_softmax
from detrt.detectors.preprocess import resized_shape


@pytest.mark.parametrize("size, expected", [
    ((480, 640), (800, 1066)),   # shortest side to 800
    ((640, 480), (1066, 800)),
    ((500, 2000), (333, 1332)),  # longest side capped at 1333 (int() truncates, as the reference)
    ((800, 1000), (800, 1000)),  # already there: untouched
])
def test_resize_rule_of_the_reference_repositories(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_shape(*size, PreprocessSpec()) == expected


def test_fixed_size_and_batch_padding() -> None:
    spec = PreprocessSpec(fixed_size=(64, 96))
    batch = preprocess([torch.full((3, 30, 40), 255, dtype=torch.uint8)], spec)
    assert batch.images.shape == (1, 3, 64, 96) and not batch.mask.any()
    expected = (1.0 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    torch.testing.assert_close(batch.images[0, :, 10, 10], expected)

    batch = preprocess([torch.zeros(3, 800, 1000, dtype=torch.uint8), torch.zeros(3, 1000, 800, dtype=torch.uint8)],
                       PreprocessSpec(pad_to=32))
    assert batch.images.shape == (2, 3, 1024, 1024)
    assert batch.mask[0, 799:801, 0].tolist() == [False, True] and batch.mask[0, 0, 999:1001].tolist() == [False, True]
    assert (batch.images[0, :, 800:, :] == 0).all()  # zero padding after normalisation, as the reference
    assert batch.original_sizes.tolist() == [[800, 1000], [1000, 800]]


def test_image_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="convert grayscale/RGBA images to RGB"):
        preprocess([torch.zeros(4, 10, 10, dtype=torch.uint8)], PreprocessSpec())
    with pytest.raises(ValueError, match="no images"):
        preprocess([], PreprocessSpec())
    array = np.zeros((5, 6, 3), dtype=np.uint8)
    assert as_image_tensor(array).shape == (3, 5, 6)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB array"):
        as_image_tensor(np.zeros((5, 6), dtype=np.uint8))


def test_softmax_postprocess_drops_the_no_object_class() -> None:
    logits = torch.tensor([[[0.0, 5.0, 9.0], [3.0, 0.0, 0.0]]])  # 2 classes + "no object"
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5]]])
    scores, labels, pixel_boxes = postprocess_softmax(logits, boxes, torch.tensor([[100, 200]]))
    assert labels.tolist() == [[1, 0]]
    torch.testing.assert_close(scores[0, 1], logits[0, 1].softmax(-1)[0])
    torch.testing.assert_close(pixel_boxes[0, 0], torch.tensor([80.0, 30.0, 120.0, 70.0]))


def test_sigmoid_topk_over_queries_and_classes() -> None:
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 2, 1] = 3.0   # best: query 2, class 1
    logits[0, 0, 3] = 2.0   # second: query 0, class 3
    boxes = torch.tensor([[[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1], [0.5, 0.5, 1.0, 1.0]]])
    scores, labels, pixel_boxes = postprocess_sigmoid_topk(logits, boxes, torch.tensor([[10, 20]]), num_select=2)
    assert labels.tolist() == [[1, 3]]
    torch.testing.assert_close(scores, torch.tensor([[3.0, 2.0]]).sigmoid())
    torch.testing.assert_close(pixel_boxes[0], torch.tensor([[0.0, 0.0, 20.0, 10.0], [0.0, 0.0, 4.0, 2.0]]))
    assert box_cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 1.0, 1.0])).tolist() == [0.0, 0.0, 1.0, 1.0]
