"""Checkpoints in the reference repositories' format load strictly; bad files fail clearly."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from detrt.detectors import CheckpointError, StateDictMismatchError, load
from support.variants import SMALL, VARIANTS, small_config, small_model

# Keys that the reference repositories write and that our layout must reproduce verbatim.
OFFICIAL_KEYS = {
    "detr": ["backbone.0.body.layer1.0.bn1.running_var", "transformer.encoder.layers.0.self_attn.in_proj_weight",
             "transformer.decoder.layers.1.multihead_attn.out_proj.weight", "transformer.decoder.norm.weight",
             "class_embed.weight", "bbox_embed.layers.2.bias", "query_embed.weight", "input_proj.weight"],
    "conditional_detr": ["transformer.decoder.layers.0.ca_qpos_proj.weight", "transformer.decoder.query_scale.layers.1.weight",
                         "transformer.decoder.ref_point_head.layers.0.bias", "transformer.decoder.layers.1.sa_kpos_proj.weight",
                         "transformer.decoder.layers.1.cross_attn.out_proj.weight"],
    "deformable_detr": ["transformer.level_embed", "transformer.reference_points.weight", "input_proj.3.1.weight",
                        "transformer.encoder.layers.0.self_attn.sampling_offsets.bias", "class_embed.1.weight",
                        "transformer.decoder.layers.1.cross_attn.value_proj.weight", "bbox_embed.1.layers.2.bias"],
    "deformable_detr-refine": ["transformer.decoder.bbox_embed.1.layers.0.weight", "class_embed.1.bias"],
    "deformable_detr-two-stage": ["class_embed.2.weight", "transformer.decoder.class_embed.2.weight",
                                  "transformer.enc_output.weight", "transformer.pos_trans_norm.bias"],
    "deformable_detr-dc5-dcn-r50": ["backbone.0.body.layer3.0.conv2.conv_offset.weight", "backbone.0.body.layer4.2.conv3.weight"],
}
ABSENT_KEYS = {
    "conditional_detr": ["transformer.decoder.layers.1.ca_qpos_proj.weight"],
    "deformable_detr": ["transformer.decoder.bbox_embed.0.layers.0.weight", "transformer.enc_output.weight"],
    "deformable_detr-two-stage": ["query_embed.weight", "transformer.reference_points.weight"],
}


def _official_file(path: Path, name: str, prefix: str = "") -> Path:
    """Write a checkpoint the way the reference training scripts do (extras included)."""
    config = small_config(name)
    state_dict = {prefix + k: v for k, v in small_model(name).state_dict().items()}
    state_dict[prefix + "backbone.0.body.conv1.total_ops"] = torch.zeros(1, dtype=torch.float64)  # thop extras
    state_dict[prefix + "backbone.0.body.conv1.total_params"] = torch.zeros(1, dtype=torch.float64)
    args = argparse.Namespace(nheads=config.nheads, dilation=config.dilation, lr=2e-4, dropout=config.dropout, num_queries=config.num_queries,
                              position_embedding={"sine": "v2", "learned": "v3"}[config.position_embedding],
                              output_dir="exps/r50", num_select=config.num_select)
    torch.save({"model": state_dict, "optimizer": {"state": {}, "param_groups": []}, "epoch": 49, "args": args}, path)
    return path


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_official_layout_loads_and_reproduces_outputs(tmp_path: Path, name: str) -> None:
    reference = small_model(name)
    keys = set(reference.state_dict())
    assert set(OFFICIAL_KEYS.get(name, [])) <= keys
    assert not set(ABSENT_KEYS.get(name, [])) & keys
    assert not any(k.endswith("num_batches_tracked") for k in keys)  # FrozenBatchNorm2d, as released
    prefix = "module." if "refine" in name else ""  # DistributedDataParallel checkpoints carry this prefix
    detector = load(_official_file(tmp_path / "checkpoint.pth", name, prefix))
    assert detector.config == small_config(name)
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, got = reference(images), detector.model(images)
    assert torch.equal(got["pred_logits"], expected["pred_logits"])
    assert torch.equal(got["pred_boxes"], expected["pred_boxes"])


def test_shared_heads_stay_shared(tmp_path: Path) -> None:
    """Without refinement, class_embed.0..5 are one module listed per layer, as in the reference."""
    model = load(_official_file(tmp_path / "c.pth", "deformable_detr")).model
    assert model.class_embed[0] is model.class_embed[1]
    refine = load(_official_file(tmp_path / "r.pth", "deformable_detr-refine")).model
    assert refine.class_embed[0] is not refine.class_embed[1]
    assert refine.transformer.decoder.bbox_embed is refine.bbox_embed


def test_overrides_fill_what_the_weights_cannot_show(tmp_path: Path) -> None:
    state = small_model("detr").state_dict()
    torch.save({"model": state}, tmp_path / "bare.pth")
    with pytest.raises(StateDictMismatchError, match="shape mismatches"):
        load(tmp_path / "bare.pth", num_queries=5)
    assert load(tmp_path / "bare.pth", nheads=SMALL["nheads"]).config.nheads == SMALL["nheads"]


def test_truncated_file(tmp_path: Path) -> None:
    whole = _official_file(tmp_path / "whole.pth", "detr").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(tmp_path / "cut.pth")


def test_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load(tmp_path / "notes.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "missing.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load(tmp_path / "empty.pth")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(StateDictMismatchError, match="cannot tell the architecture"):
        load(tmp_path / "other.pth")


class _Payload:
    """Unpickling this would run a command; the loader must refuse before that happens."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/detrt-pwned",))


def test_pickle_with_arbitrary_class_is_refused(tmp_path: Path) -> None:
    state = small_model("detr").state_dict()
    torch.save({"model": state, "hook": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"needs arbitrary unpickling \(it holds posix.system\).*convert it"):
        load(tmp_path / "evil.pth")
    assert not Path("/tmp/detrt-pwned").exists()


def test_checkpoint_of_another_architecture_lists_keys(tmp_path: Path) -> None:
    path = _official_file(tmp_path / "detr.pth", "detr")
    with pytest.raises(StateDictMismatchError) as error:
        load(path, arch="deformable_detr")
    message = str(error.value)
    assert "it looks like detr" in message
    assert "missing keys: " in message and "unexpected keys: " in message
    missing = message.split("missing keys: ")[1].split(";")[0]
    assert missing.count(",") == 10 and missing.endswith("...")  # ten named, then an ellipsis
    assert any(f"{count} missing keys" in message for count in range(11, 1000))


def test_shape_mismatch_names_key_expected_and_got(tmp_path: Path) -> None:
    state = small_model("conditional_detr").state_dict()
    state["class_embed.weight"] = torch.zeros(3, SMALL["hidden_dim"])
    state["class_embed.bias"] = torch.zeros(3)
    torch.save({"model": state, "args": argparse.Namespace(nheads=4)}, tmp_path / "c.pth")
    with pytest.raises(StateDictMismatchError, match=r"2 shape mismatches: class_embed.bias \(expected \(7,\), got \(3,\)\), class_embed.weight \(expected \(7, 64\), got \(3, 64\)\)"):
        load(tmp_path / "c.pth", num_classes=SMALL["num_classes"])
