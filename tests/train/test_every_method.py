"""Every registered method pretrains through the engine on RGB and on multispectral data, and can be resumed.

One epoch on tiny folders (small heads through method arguments to keep CI fast); checks the run directory,
a finite logged loss, the collapse monitors, and that the checkpoint's encoder loads for evaluation.
"""

from __future__ import annotations

import csv
import math

import pytest

from geossl.methods.registry import METHODS
from geossl.train.checkpoint import load_encoder
from geossl.train.config import PretrainConfig
from geossl.train.run import pretrain

from ..conftest import make_npy_folder, make_rgb_folder

#: Smaller heads than the papers' so that one epoch on 36 images takes a second (the defaults are tested in
#: tests/methods); keys must be constructor arguments of the method.
SMALL_HEADS = {
    "simclr": {"hidden_dim": 64, "projection_dim": 32},
    "moco-v2": {"hidden_dim": 64, "projection_dim": 32, "queue_size": 64},
    "moco-v3": {"hidden_dim": 64, "projection_dim": 32},
    "byol": {"hidden_dim": 64, "projection_dim": 32},
    "simsiam": {"projection_dim": 64, "prediction_dim": 32},
    "barlow-twins": {"hidden_dim": 64, "projection_dim": 64},
    "vicreg": {"hidden_dim": 64, "projection_dim": 64},
    "swav": {"hidden_dim": 64, "projection_dim": 32, "n_prototypes": 16},
    "dino": {"hidden_dim": 64, "bottleneck_dim": 32, "out_dim": 128},
    "mmcr": {"hidden_dim": 64, "projection_dim": 32},
    "ot-sample": {"hidden_dim": 64, "projection_dim": 32},
    "ot-feature": {"hidden_dim": 64, "projection_dim": 32},
    "ot-coot": {"hidden_dim": 64, "projection_dim": 32},
    "dense-ot": {"hidden_dim": 64, "projection_dim": 32},
    "t-regs": {"hidden_dim": 64, "projection_dim": 64},
    "ssw": {"hidden_dim": 64},
    "sw": {"hidden_dim": 64},
    "uniformity": {"hidden_dim": 64},
    "bam": {"hidden_dim": 64, "projection_dim": 32},
}


def _args(name: str) -> dict:
    cls = METHODS[name]
    return {k: v for k, v in SMALL_HEADS.get(name, {}).items() if k in cls.defaults}


def _last_loss(run) -> float:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    values = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    return values[-1]


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("kind", ["rgb", "multispectral"])
def test_pretrain_every_method(tmp_path, name: str, kind: str) -> None:
    data = make_rgb_folder(tmp_path / "data", size=32) if kind == "rgb" else make_npy_folder(tmp_path / "data", bands=5, size=32, per_class=18)
    run = tmp_path / "run"
    config = PretrainConfig(method=name, method_args=_args(name), train_data=str(data), epochs=1, batch_size=8,
                            run_dir=str(run), accelerator="cpu", progress=False, online_eval=False)
    result = pretrain(config)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert math.isfinite(_last_loss(run))
    header = next(csv.reader(open(run / "metrics.csv")))
    assert "monitor/rankme" in header and "monitor/per_dim_std" in header
    encoder = load_encoder(result.last_checkpoint)
    assert encoder.data_info["num_bands"] == (3 if kind == "rgb" else 5)


def test_teacher_layer_loads_the_ema_teachers_backbone(tmp_path) -> None:
    """``layer="teacher"`` evaluates the EMA teacher (DINO's protocol): its weights, not the student's; a method
    without a teacher is refused in one line; the teacher's report does not overwrite the student's."""
    import torch

    from geossl.errors import GeosslError
    from geossl.train.evaluate import evaluate_checkpoint

    data = make_rgb_folder(tmp_path / "data", size=32)
    run = tmp_path / "byol"
    config = PretrainConfig(method="byol", method_args=_args("byol"), data=str(data), epochs=1, batch_size=8,
                            run_dir=str(run), accelerator="cpu", progress=False, online_eval=False)
    ckpt = pretrain(config).last_checkpoint
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    teacher = load_encoder(ckpt, layer="teacher").backbone.state_dict()
    student = load_encoder(ckpt).backbone.state_dict()
    assert all(torch.equal(v, state[f"method.teacher_backbone.{k}"]) for k, v in teacher.items())
    assert all(torch.equal(v, state[f"method.backbone.{k}"]) for k, v in student.items())
    # after some EMA steps at momentum < 1 the two differ
    assert not torch.equal(teacher["conv1.weight"], student["conv1.weight"])

    evaluate_checkpoint(run, protocols="knn", layer="teacher", prefer="last", plots=False)
    assert (run / "eval-teacher" / "report.md").is_file() and not (run / "report.md").exists()
    assert "EMA teacher" in (run / "eval-teacher" / "report.md").read_text()

    simclr_run = tmp_path / "simclr"
    pretrain(PretrainConfig(method="simclr", method_args=_args("simclr"), train_data=str(data), epochs=1, batch_size=8,
                            run_dir=str(simclr_run), accelerator="cpu", progress=False, online_eval=False))
    with pytest.raises(GeosslError, match="has no EMA teacher"):
        load_encoder(simclr_run, layer="teacher", prefer="last")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_pretrain_every_method_in_bfloat16_mixed_precision(tmp_path, name: str) -> None:
    """``--precision bf16-mixed`` on the CPU (oneDNN's bfloat16 kernels, about 2x faster ResNet steps on CPUs with
    AMX/AVX-512 BF16): the backbone and heads run in bfloat16, every loss in float32 (geossl.losses.precision), and
    the weights stay float32."""
    import torch

    data = make_rgb_folder(tmp_path / "data", size=32)
    run = tmp_path / "run"
    config = PretrainConfig(method=name, method_args=_args(name), train_data=str(data), epochs=1, batch_size=8,
                            run_dir=str(run), accelerator="cpu", progress=False, online_eval=False, precision="bf16-mixed")
    result = pretrain(config)
    assert math.isfinite(_last_loss(run))
    state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def test_byol_predictor_lr_scale_reaches_the_optimiser(tmp_path) -> None:
    """BYOL's default ``predictor_lr_scale = 10``: the predictor's parameter groups train at 10x the others' lr."""
    import torch

    data = make_rgb_folder(tmp_path / "data", size=32)
    config = PretrainConfig(method="byol", method_args=_args("byol"), train_data=str(data), epochs=1,
                            batch_size=8, run_dir=str(tmp_path / "run"), accelerator="cpu", progress=False, online_eval=False)
    ckpt = torch.load(pretrain(config).last_checkpoint, map_location="cpu", weights_only=False)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    base = groups[0]["initial_lr"]
    scaled = [g for g in groups if g["initial_lr"] == pytest.approx(10 * base)]
    # the predictor: Linear (no bias before BatchNorm), BatchNorm weight and bias, Linear weight and bias
    assert sum(len(g["params"]) for g in scaled) == 5
