"""Training a Deformable DETR on a COCO-format dataset (used for the zoo's shapes model).

Checkpoints are written in the official Deformable DETR format (`model`, `optimizer`,
`lr_scheduler`, `epoch`, `args`), so `detrt.detectors.load` reads them and training resumes from them.
"""
from __future__ import annotations

import argparse
import io
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d
from tqdm import tqdm

from ..atomic import write_bytes_atomic
from ..checkpoints.checkpoint import load_file
from ..config import DetectorConfig
from ..data.coco import CocoDataset, DatasetError
from ..errors import InputError
from ..models.build import build_model
from ..preprocess import PreprocessSpec, normalize, resize
from .losses import SetCriterion


@dataclass
class TrainSettings:
    """Optimisation settings (the reference's names where they exist)."""

    epochs: int = 10
    batch_size: int = 4
    lr: float = 2e-4
    weight_decay: float = 1e-4
    lr_drop: int = 8  # epochs after which the learning rate is divided by 10
    clip_max_norm: float = 0.1
    seed: int = 42


class TrainingImages(torch.utils.data.Dataset):
    """Images resized to the model's fixed input size and normalised, with random horizontal flips."""

    def __init__(self, dataset: CocoDataset, preprocess: PreprocessSpec, flip: bool) -> None:
        if preprocess.fixed_size is None:
            raise InputError("training here needs a fixed input size (PreprocessSpec.fixed_size)")
        self.dataset, self.preprocess, self.flip = dataset, preprocess, flip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image = resize(self.dataset.load_image(index).float() / 255.0, self.preprocess.fixed_size)
        target = self.dataset.target(index)
        if self.flip and random.random() < 0.5:
            image = image.flip(-1)
            target["boxes"] = target["boxes"] * torch.tensor([-1.0, 1, 1, 1]) + torch.tensor([1.0, 0, 0, 0])
        return normalize(image, self.preprocess.mean, self.preprocess.std), target


def collate_batch(batch: list) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Stack images; keep the per-image targets in a list."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


def trainable_batchnorm(model: nn.Module) -> nn.Module:
    """Replace frozen BN by trainable BatchNorm2d (a backbone trained from scratch needs it)."""
    for name, child in model.named_children():
        if isinstance(child, FrozenBatchNorm2d):
            bn = nn.BatchNorm2d(child.weight.shape[0], eps=child.eps)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, key).copy_(getattr(child, key))
            setattr(model, name, bn)
        else:
            trainable_batchnorm(child)
    return model


def frozen_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The state dict in the frozen-BN (reference) layout: no `num_batches_tracked`."""
    return {k: v.detach() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, epoch: int, config: DetectorConfig,
                    settings: TrainSettings, preprocess: PreprocessSpec, class_names: list[str]) -> None:
    """Write an official-format checkpoint atomically; `args` also records pre-processing and class names."""
    args = argparse.Namespace(**config.to_dict(), **asdict(settings), preprocess=preprocess.to_dict(),
                              class_names=list(class_names))
    content = {"model": frozen_state_dict(model), "optimizer": optimizer.state_dict(),
               "lr_scheduler": scheduler.state_dict(), "epoch": epoch, "args": args}
    _save_atomic(content, path)


def _save_atomic(content: dict, path: Path) -> Path:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def release_weights(checkpoint: Path, out: Path) -> Path:
    """Write the model and args of a training checkpoint to `out` (no optimizer state), atomically."""
    state = load_file(checkpoint)
    return _save_atomic({"model": state["model"], "args": state["args"], "epoch": state["epoch"]}, out)


def train(config: DetectorConfig, preprocess: PreprocessSpec, annotations: Path, out: Path,
          settings: TrainSettings, resume: bool = True) -> Path:
    """Train `config` on the COCO dataset `annotations`.

    Writes OUT/checkpoint.pth after every epoch (resumable) and, at the end, OUT/model.pth with the
    weights alone; returns the path of model.pth.
    """
    dataset = CocoDataset.read(annotations)
    if len(dataset.class_names) != config.num_classes:
        raise DatasetError(f"the dataset has {len(dataset.class_names)} classes but the model {config.num_classes}")
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    model = trainable_batchnorm(build_model(config)).train()
    criterion = SetCriterion(config.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_drop)
    checkpoint_path = out / "checkpoint.pth"
    start_epoch = 0
    if resume and checkpoint_path.is_file():
        state = load_file(checkpoint_path)
        model.load_state_dict(state["model"], strict=False)  # BatchNorm's num_batches_tracked is not saved
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        start_epoch = state["epoch"] + 1
        print(f"resumed from {checkpoint_path} at epoch {start_epoch}")
    loader = torch.utils.data.DataLoader(TrainingImages(dataset, preprocess, flip=True),
                                         batch_size=settings.batch_size, shuffle=True, drop_last=True,
                                         collate_fn=collate_batch)
    for epoch in range(start_epoch, settings.epochs):
        started = time.time()
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch")
        for images, targets in progress:
            losses = criterion(model(images), targets)
            optimizer.zero_grad()
            losses["loss"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.clip_max_norm)
            optimizer.step()
            progress.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        scheduler.step()
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, epoch, config, settings, preprocess,
                        dataset.class_names)
        print(f"epoch {epoch + 1}: {time.time() - started:.0f} s, saved {checkpoint_path}")
    return release_weights(checkpoint_path, out / "model.pth")
