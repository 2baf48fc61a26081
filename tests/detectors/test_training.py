"""Matching and losses on hand-made cases, and a few training steps that reduce the loss."""
from __future__ import annotations

from pathlib import Path

import torch

from detrt.detectors import PreprocessSpec, load
from detrt.detectors.data.coco import CocoDataset
from detrt.detectors.training.losses import SetCriterion, sigmoid_focal_loss
from detrt.detectors.training.matcher import HungarianMatcher
from detrt.detectors.data.shapes_dataset import write_dataset
from detrt.detectors.training.train import TrainingImages, TrainSettings, collate_batch, train
from support.variants import small_config


def _outputs(boxes: list[list[float]], logits: list[list[float]]) -> dict[str, torch.Tensor]:
    return {"pred_boxes": torch.tensor([boxes]), "pred_logits": torch.tensor([logits])}


def test_matcher_pairs_each_target_with_its_prediction() -> None:
    outputs = _outputs([[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]],
                       [[5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])
    targets = [{"labels": torch.tensor([1, 0]), "boxes": torch.tensor([[0.7, 0.7, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])}]
    rows, cols = HungarianMatcher()(outputs, targets)[0]
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_losses_vanish_for_a_perfect_prediction_and_grow_with_errors() -> None:
    target = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]])}]
    criterion = SetCriterion(num_classes=2)
    perfect = criterion(_outputs([[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]], [[-12.0, 12.0], [-12.0, -12.0]]), target)
    assert perfect["loss_bbox"] == 0 and abs(perfect["loss_giou"]) < 1e-6 and perfect["loss_ce"] < 1e-6
    shifted = criterion(_outputs([[0.6, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]], [[-12.0, 12.0], [-12.0, -12.0]]), target)
    torch.testing.assert_close(shifted["loss_bbox"], torch.tensor(0.1))
    # GIoU of two 0.2 x 0.4 boxes shifted by 0.1: IoU = 1/3, enclosing = union -> loss 2/3
    torch.testing.assert_close(shifted["loss_giou"], torch.tensor(2 / 3))


def test_focal_loss_matches_its_definition() -> None:
    logits, targets = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    p = torch.sigmoid(logits)
    expected = 0.25 * (1 - p[0, 0]) ** 2 * -torch.log(p[0, 0]) + 0.75 * p[0, 1] ** 2 * -torch.log(1 - p[0, 1])
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, num_boxes=1.0), expected)


def test_a_few_training_steps_reduce_the_loss_and_checkpoints_load(tmp_path: Path) -> None:
    config = small_config("deformable_detr-refine").replace(num_classes=6)
    data = write_dataset(tmp_path / "data", 8, seed=3, progress=False)
    preprocess = PreprocessSpec(fixed_size=(128, 128))
    images, targets = collate_batch([TrainingImages(CocoDataset.read(data), preprocess, flip=False)[i] for i in range(8)])
    criterion = SetCriterion(6)

    def loss_of(checkpoint: Path) -> float:
        with torch.no_grad():
            return float(criterion(load(checkpoint).model(images), targets)["loss"])

    first = train(config, preprocess, data, tmp_path / "run", TrainSettings(epochs=1, batch_size=4, lr=1e-3))
    before = loss_of(first)
    final = train(config, preprocess, data, tmp_path / "run", TrainSettings(epochs=8, batch_size=4, lr=1e-3))
    after = loss_of(final)  # the second call resumed after epoch 1 and trained 7 more
    assert after < before * 0.8, (before, after)
    detector = load(final)
    assert detector.preprocess.fixed_size == (128, 128) and detector.class_names[0] == "circle"
