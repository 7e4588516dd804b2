"""Every loss computes in float32 under mixed precision (``geossl.losses.precision``).

Under CPU bfloat16 autocast, with bfloat16 inputs (as the heads produce them), each loss module returns a float32
value equal to the same loss of the same (up-cast) values without autocast, and gradients reach the bfloat16 inputs.
Without autocast a decorated loss is a plain call.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import geossl.losses as losses
from geossl.losses.precision import float32_loss, full_precision

N, D = 16, 8


def _z(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _unit(seed: int) -> torch.Tensor:
    return F.normalize(_z(seed, N, 3), dim=1)


#: loss module name -> (constructor kwargs, inputs as float32 tensors or lists of them)
CASES = {
    "NTXentLoss": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "MoCoLoss": ({"queue_size": 32, "dim": D}, lambda: (_z(0, N, D), _z(1, N, D))),
    "MoCoV3Loss": ({}, lambda: (_z(0, N, D), _z(1, N, D), _z(2, N, D), _z(3, N, D))),
    "NegativeCosineSimilarity": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "BarlowTwinsLoss": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "VICRegLoss": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "MMCRLoss": ({}, lambda: (_z(0, N, 2, D),)),
    "SwAVLoss": ({}, lambda: ([_z(0, N, 12), _z(1, N, 12)],)),
    "DINOLoss": ({"out_dim": 12}, lambda: ([_z(0, N, 12), _z(1, N, 12)], [_z(2, N, 12), _z(3, N, 12)])),
    "BAMLoss": ({}, lambda: ([_z(0, N, D), _z(1, N, D)],)),
    "TREG": ({}, lambda: (_z(0, N, D),)),
    "TREGSLoss": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "OTSampleLoss": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "OTFeatureLoss": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "COOTLoss": ({}, lambda: (_z(0, N, D), _z(1, N, D))),
    "SSWUniformityLoss": ({"seed": 0}, lambda: (_unit(0), _unit(1))),
    "SWUniformityLoss": ({"seed": 0}, lambda: (_unit(0), _unit(1))),
    "AlignUniformLoss": ({}, lambda: (_unit(0), _unit(1))),
    "SoftDenseLoss": ({}, lambda: (_z(0, 4, 6, D), _z(1, 4, 6, D))),
    "DenseOTLoss": ({}, lambda: (_z(0, 4, D), _z(1, 4, D), _z(2, 4, 6, D), _z(3, 4, 6, D))),
}
NOT_LOSSES = {"MemoryQueue", "SwAVQueue"}
#: losses on the unit sphere: their half-precision inputs are re-normalised in float32 (``unit_rows=True``)
UNIT_ROWS = {"SSWUniformityLoss", "SWUniformityLoss", "AlignUniformLoss"}


def _map(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(o, fn) for o in obj)
    return obj


def _leaves(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    return [t for o in obj for t in _leaves(o)] if isinstance(obj, (list, tuple)) else []


def test_every_exported_loss_module_is_covered() -> None:
    modules = {name for name in losses.__all__ if isinstance(getattr(losses, name), type)}
    assert modules - NOT_LOSSES == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_is_float32_under_bfloat16_autocast(name: str) -> None:
    kwargs, make_inputs = CASES[name]
    cls = getattr(losses, name)
    if "seed" in kwargs and "seed" not in cls.__init__.__code__.co_varnames:
        kwargs = {k: v for k, v in kwargs.items() if k != "seed"}
    torch.manual_seed(0)
    loss_fn = cls(**kwargs)
    reference_fn = copy.deepcopy(loss_fn)  # stateful losses (DINO's center, MoCo's queue) start equal
    half = _map(make_inputs(), lambda t: t.to(torch.bfloat16).requires_grad_())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)
        value = loss_fn(*half)
    torch.manual_seed(1)
    upcast = (lambda t: F.normalize(t.detach().float(), dim=-1)) if name in UNIT_ROWS else (lambda t: t.detach().float())
    expected = reference_fn(*_map(half, upcast))
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    value.backward()
    grads = [t.grad for t in _leaves(half)]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or (g.dtype == torch.bfloat16 and torch.isfinite(g.float()).all()) for g in grads)


def test_float32_loss_casts_nested_half_tensors_and_disables_autocast() -> None:
    seen = {}

    @float32_loss
    def loss(zs: list[torch.Tensor], w: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
        seen["dtypes"] = [z.dtype for z in zs] + [w.dtype]
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return scale * sum((z @ w).sum() for z in zs)

    zs = [_z(0, 4, 3).bfloat16(), _z(1, 4, 3).half()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(zs, _z(2, 3, 2), scale=2.0)
    assert seen == {"dtypes": [torch.float32] * 3, "autocast": False}
    assert out.dtype == torch.float32


def test_float32_loss_is_a_plain_call_without_autocast_or_half_inputs() -> None:
    received = []

    @float32_loss
    def loss(z: torch.Tensor) -> torch.Tensor:
        received.append(z)
        return z.sum()

    z64 = _z(0, 4, 3).double()
    loss(z64)
    assert received[-1] is z64  # no copy, no cast
    assert full_precision(z64) is z64 and full_precision(z64.bfloat16()).dtype == torch.float32


def test_unit_rows_are_renormalised_in_float32_only_when_given_in_half_precision() -> None:
    @float32_loss(unit_rows=True)
    def norms(z: torch.Tensor) -> torch.Tensor:
        return z.norm(dim=1)

    z = F.normalize(_z(0, N, 3), dim=1)
    half_norms = norms(z.bfloat16())
    assert half_norms.dtype == torch.float32
    torch.testing.assert_close(half_norms, torch.ones(N))  # the bfloat16 rows alone are off by up to ~1e-2
    assert (z.bfloat16().float().norm(dim=1) - 1).abs().max() > 1e-4
    off = 1.5 * z
    torch.testing.assert_close(norms(off), off.norm(dim=1))  # float32 input: untouched, the loss checks it


def test_dino_logits_and_swav_scores_are_float32_under_autocast() -> None:
    """The heads whose outputs are divided by a small temperature compute their last product in float32."""
    from geossl.methods.dino import DINOHead
    from geossl.methods.swav import SwAVPrototypes

    torch.manual_seed(0)
    head, prototypes = DINOHead(32, out_dim=64, hidden_dim=16, bottleneck_dim=8, batch_norm=True), SwAVPrototypes(8, 12)
    x = _z(0, N, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, z = head(x)
        scores = prototypes(F.normalize(_z(1, N, 8), dim=1))
    assert logits.dtype == z.dtype == scores.dtype == torch.float32
    # the unit rows are normalised in float32, so they are unit to float32 precision
    torch.testing.assert_close(z.norm(dim=1), torch.ones(N))
