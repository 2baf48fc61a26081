"""`detrt compare`: candidates (ONNX of any precision, TensorRT engines) against the PyTorch reference.

Every model runs through its runtime backend inside a polygraphy runner (`ModelRunner`), on the same
pre-processed images; polygraphy's Comparator checks the output tensors against the candidate's
precision policy (`compare_policy.py`); the runtime's post-processing turns outputs into detections for
the detection-level agreement and, with COCO annotations, the mAP of each model.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from detrt.calibrate import list_images, readable_images
from detrt.detectors import (
    CocoDataset,
    Detections,
    Detector,
    InputError,
    coco_metrics,
    coco_results,
    image_size,
    read_image,
)
from polygraphy.comparator import Comparator, RunResults
from polygraphy.logger import G_LOGGER
from tqdm import tqdm

from ..backends.base import INPUT_NAME
from ..errors import DetrtRuntimeError
from ..model import Model, Prepared, open_model
from .agreement import ImageAgreement, image_agreement, summarize
from .policy import MIN_AP_IMAGES, Policy, policy_for
from .runner import ModelRunner

OUTPUTS = ("scores", "labels", "boxes")


class ModelMismatchError(DetrtRuntimeError):
    """A candidate that was not made from the reference weights, or cannot be compared with it."""


@dataclass
class CandidateResult:
    """Everything measured for one candidate."""

    name: str
    path: str
    backend: str
    precision: str
    policy: dict
    tensors: dict[str, dict]
    agreement: dict
    ap: dict | None
    passed: bool
    failures: list[str]
    ms_per_image: float
    per_image: list[ImageAgreement] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly result (per-image agreement left out)."""
        return {"path": self.path, "backend": self.backend, "precision": self.precision, "passed": self.passed,
                "failures": self.failures, "ms_per_image": round(self.ms_per_image, 2), "policy": self.policy,
                "tensors": self.tensors,
                "agreement": self.agreement, "ap": self.ap}


@dataclass
class Comparison:
    """The reference's run and every candidate's result."""

    reference: str
    images: list[Path]
    reference_ap: dict | None
    reference_ms_per_image: float
    candidates: list[CandidateResult]
    detections: dict[str, list[Detections]] = field(repr=False, default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "name: reason" of each image that could not be read

    @property
    def passed(self) -> bool:
        """True when every candidate passed."""
        return all(candidate.passed for candidate in self.candidates)

    def to_dict(self) -> dict:
        """JSON-friendly report."""
        return {"reference": self.reference, "images": len(self.images), "skipped_images": self.skipped,
                "reference_ap": self.reference_ap,
                "reference_ms_per_image": round(self.reference_ms_per_image, 2),
                "passed": self.passed, "candidates": {c.name: c.to_dict() for c in self.candidates}}


def _feeds(model: Model, images: list[Path], batch: int) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(images), batch):
        chunk = [read_image(path) for path in images[start:start + batch]]
        yield {INPUT_NAME: model.prepare(chunk).images}


def _original_sizes(images: list[Path]) -> list[tuple[int, int]]:
    return [image_size(path) for path in images]


def _check_candidate(reference: Model, candidate: Model, name: str) -> None:
    expected, found = reference.metadata.weights_sha256, candidate.metadata.weights_sha256
    if expected != found:
        raise ModelMismatchError(f"{name} was not exported from the reference weights (weights fingerprint "
                                 f"{found[:12]} != {expected[:12]}): export it from this checkpoint, or pass the "
                                 "checkpoint it came from as --reference")
    if tuple(candidate.metadata.input_size) != tuple(reference.metadata.input_size):
        raise ModelMismatchError(f"{name} takes {candidate.metadata.input_size} images but the reference "
                                 f"{reference.metadata.input_size}; compare candidates exported at one size")


def _whole_run(results: RunResults, names: list[str]) -> RunResults:
    """One iteration per runner holding every image's outputs, so statistics cover the whole run."""
    joined = RunResults()
    for name in names:
        outputs = {output: np.concatenate([run[output] for run in results[name]]) for output in OUTPUTS}
        joined.add([outputs], runner_name=name)
    return joined


def _tensor_stats(results: RunResults, reference: str, candidate: str, policy: Policy,
                  input_size: tuple[int, int]) -> tuple[dict[str, dict], list[str]]:
    """Per-output error statistics over all images, and polygraphy's verdict per checked output."""
    joined = _whole_run(results, [reference, candidate])
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # relative errors against zeros: not checked (rtol 0)
        accuracy = Comparator.compare_accuracy(joined, compare_func=policy.compare_func(input_size),
                                               comparisons=[(0, 1)])
    verdicts = next(iter(accuracy[0].values()))[0]  # one compare function, one runner pair, one iteration
    tolerances = policy.tolerances(input_size)
    stats, failures = {}, []
    for output in OUTPUTS:
        diff = np.abs(joined[reference][0][output].astype(np.float64) - joined[candidate][0][output].astype(np.float64))
        checked = output in tolerances
        stats[output] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                         "median_abs": float(np.median(diff)), "p99_abs": float(np.quantile(diff, 0.99)),
                         "checked": checked, "atol": tolerances.get(output)}
        if checked:
            stats[output]["check"] = policy.check_of(output)
            stats[output]["passed"] = bool(verdicts[output])
            if not stats[output]["passed"]:
                failures.append(f"{output}: {policy.check_of(output)} beyond {tolerances[output]:g}")
    return stats, failures


def _ms_per_image(iterations: list, images: int) -> float:
    """Inference time per image (the runner's own timing, pre-processing excluded)."""
    return 1000.0 * sum(iteration.runtime for iteration in iterations) / max(images, 1)


def _detections(model: Model, runs: list, sizes: list[tuple[int, int]]) -> list[Detections]:
    outputs = {name: np.concatenate([run[name] for run in runs]) for name in OUTPUTS}
    return model.finish(outputs, Prepared(np.empty((0,)), sizes))


def _coco_ap(detections: list[Detections], dataset: CocoDataset, annotations: Path) -> dict:
    """AP (points) of the detections of the dataset's first len(detections) images, over those images."""
    indices = range(len(detections))
    metrics = coco_metrics(annotations, coco_results(dataset, indices, detections),
                           [dataset.images[i]["id"] for i in indices])
    return {key: round(value * 100, 2) for key, value in metrics.items()}


def compare(reference: str | Path | Detector, candidates: list[str | Path], images_dir: str | Path | None = None,
            coco: str | Path | None = None, num: int | None = None, batch: int = 1, strict: bool = False) -> Comparison:
    """Run the reference and every candidate on the images and measure each candidate against it. Images
    that cannot be read are skipped and counted, except with `strict` or `coco` (AP needs every image)."""
    if not candidates:
        raise InputError("give at least one --candidate model")
    paths, skipped = readable_images(list_images(images_dir, coco, num), strict=strict or coco is not None)
    reference_model = open_model(reference)
    names = [Path(str(c)).name for c in candidates]
    if len(set(names)) != len(names):
        names = [str(c) for c in candidates]
    models = [open_model(str(c)) for c in candidates]
    for name, model in zip(names, models):
        _check_candidate(reference_model, model, name)
    results = RunResults()
    for name, model in [("pytorch", reference_model), *zip(names, models)]:
        with tqdm(total=-(-len(paths) // batch), desc=name, unit="batch") as bar, G_LOGGER.verbosity(G_LOGGER.ERROR):
            runner = ModelRunner(model, name, progress=lambda: bar.update(1))
            results[name] = Comparator.run([runner], data_loader=_feeds(model, paths, batch))[name]
    sizes = _original_sizes(paths)
    reference_detections = _detections(reference_model, results["pytorch"], sizes)
    detections = {"pytorch": reference_detections}
    dataset = CocoDataset.read(coco, images_dir) if coco else None  # `paths` are its first images, in order
    reference_ap = _coco_ap(reference_detections, dataset, Path(coco)) if coco else None
    input_size = tuple(reference_model.metadata.input_size)
    outcomes = []
    for name, path, model in zip(names, candidates, models):
        policy = policy_for(model.metadata.precision)
        tensors, failures = _tensor_stats(results, "pytorch", name, policy, input_size)
        detections[name] = _detections(model, results[name], sizes)
        per_image = [image_agreement(r, c) for r, c in zip(reference_detections, detections[name])]
        agreement = summarize(per_image)
        for key in ("precision", "recall"):
            if agreement[key] < policy.min_agreement:
                failures.append(f"detection {key} {agreement[key]:.4f} < {policy.min_agreement}")
        ap = None
        if coco:
            ap = _coco_ap(detections[name], dataset, Path(coco))
            ap["drop_points"] = round(reference_ap["AP"] - ap["AP"], 2)
            ap["checked"] = len(paths) >= MIN_AP_IMAGES
            if ap["checked"] and ap["drop_points"] > policy.max_ap_drop:
                failures.append(f"AP drop {ap['drop_points']:.2f} points > {policy.max_ap_drop}")
        outcomes.append(CandidateResult(name, str(path), model.backend.name, model.metadata.precision,
                                        policy.to_dict(input_size), tensors, agreement, ap, not failures, failures,
                                        _ms_per_image(results[name], len(paths)), per_image))
    return Comparison(str(reference if not isinstance(reference, Detector) else "Detector"), paths, reference_ap,
                      _ms_per_image(results["pytorch"], len(paths)), outcomes, detections, skipped)
