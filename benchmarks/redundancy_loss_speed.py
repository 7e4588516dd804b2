"""Barlow Twins and VICReg losses: the (N, N) Gram route against the (D, D) matrix.

Both losses need only the diagonal and the Frobenius norm of a D x D product of batch embeddings (Barlow Twins'
cross-correlation, VICReg's covariance). ``geossl.losses.barlow_twins.cross_product_norms`` gets the norm from the
two N x N Gram matrices when 2N < D (2N²D multiply-adds instead of N·D², O(N²) memory instead of O(D²)). This script
times the loss forward+backward both ways, at the projector widths of the small-image recipe (2048) and of the
papers (8192), and checks that both routes give the same loss.

Usage: python benchmarks/redundancy_loss_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
from unittest import mock

import torch
from _common import median_time, write_results

from geossl.losses import barlow_twins as bt_module
from geossl.losses.barlow_twins import barlow_twins_loss
from geossl.losses.vicreg import vicreg_loss

LOSSES = {"barlow-twins": barlow_twins_loss, "vicreg": vicreg_loss}


def time_route(loss_fn, z_a, z_b, use_gram: bool, repeats: int) -> tuple[float, float]:
    """Median seconds of the loss forward+backward with every ``cross_product_norms`` call forced to one route."""
    original = bt_module.cross_product_norms

    def forced(a, b, use_gram_unused=None):
        return original(a, b, use_gram=use_gram)

    def step() -> float:
        a, b = z_a.detach().requires_grad_(), z_b.detach().requires_grad_()
        loss = loss_fn(a, b)
        loss.backward()
        return float(loss)

    with mock.patch("geossl.losses.barlow_twins.cross_product_norms", forced), \
            mock.patch("geossl.losses.vicreg.cross_product_norms", forced):
        return median_time(step, repeats), step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, loss_fn in LOSSES.items():
        for n, d in [(256, 2048), (256, 8192), (1024, 8192)]:
            z_a, z_b = torch.randn(n, d), torch.randn(n, d)
            t_mat, v_mat = time_route(loss_fn, z_a, z_b, False, args.repeats)
            t_gram, v_gram = time_route(loss_fn, z_a, z_b, True, args.repeats)
            rel = abs(v_gram - v_mat) / abs(v_mat)
            assert rel < 1e-4, f"{name} N={n} D={d}: routes disagree by {rel:.1e}"
            rows.append({"loss": name, "N": n, "D": d, "D x D ms": 1e3 * t_mat, "Gram ms": 1e3 * t_gram,
                         "speed-up": t_mat / t_gram, "relative difference": f"{rel:.1e}"})
            print(rows[-1])
    notes = (
        "Forward+backward of the loss alone on random float32 embeddings (N, D) per view, medians of "
        f"{args.repeats} calls after a warm-up. 'D x D': the cross-correlation / covariance matrix formed explicitly; "
        "'Gram': the two N x N Gram matrices (the route taken automatically when 2N < D). Relative difference: of "
        "the loss values of the two routes."
    )
    write_results("redundancy_loss_speed", "Barlow Twins / VICReg loss: Gram route against the D x D matrix", rows,
                  ["loss", "N", "D", "D x D ms", "Gram ms", "speed-up", "relative difference"], notes)


if __name__ == "__main__":
    main()
