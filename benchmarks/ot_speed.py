"""Speed of geossl.ot against POT's torch backend and against the pairwise uniformity loss.

Claims of the OT issue, measured here (medians of repeated runs, float32, fixed iterations):
  1. batched Sinkhorn, B = 64 problems of 256x256, reg 0.05: geossl (one batched call) vs a Python
     loop over POT's ``ot.sinkhorn(method="sinkhorn_log")`` on the same torch tensors (target ≥ 5x);
  2. one 4096x4096 problem: geossl vs POT's log-domain Sinkhorn at equal iterations (target ≥ 1.5x);
  3. SSW to the uniform distribution (closed form) vs the Wang–Isola Gaussian-potential uniformity,
     N = 512 … 8192, d = 128 (target ≥ 10x at N = 8192).

Usage: python benchmarks/ot_speed.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _common import median_time, write_results

from geossl.losses.uniformity import wang_isola_uniformity
from geossl.ot import sinkhorn, spherical_sliced_wasserstein_to_uniform


def main() -> None:
    import ot  # POT, a benchmark extra

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    iters = 100
    g = torch.Generator().manual_seed(0)
    rows = []

    # 1. batched
    B, n = 64, 256
    M = torch.rand(B, n, n, generator=g)
    a = torch.full((n,), 1.0 / n)
    pot_loop = median_time(lambda: [ot.sinkhorn(a, a, M[i], 0.05, method="sinkhorn_log", numItermax=iters, stopThr=0.0) for i in range(B)], repeats)
    pot_loop_scaling = median_time(lambda: [ot.sinkhorn(a, a, M[i], 0.05, numItermax=iters, stopThr=0.0) for i in range(B)], repeats)
    for method in ("auto", "log"):
        ours = median_time(lambda: sinkhorn(None, None, M, 0.05, n_iters=iters, method=method), repeats)
        case = f"batched {B}x{n}x{n}, {iters} it, method={method}"
        rows.append({"case": case, "geossl s": ours, "reference s": pot_loop, "reference": "POT loop, sinkhorn_log", "speed-up": pot_loop / ours})
        rows.append({"case": case, "geossl s": ours, "reference s": pot_loop_scaling, "reference": "POT loop, sinkhorn (scaling)", "speed-up": pot_loop_scaling / ours})

    # 2. one large problem
    n = 2048 if args.quick else 4096
    x, y = torch.rand(n, 2, generator=g), torch.rand(n, 2, generator=g)
    M1 = torch.cdist(x, y) ** 2 / 2
    a1 = torch.full((n,), 1.0 / n)
    big_iters = 20
    pot = median_time(lambda: ot.sinkhorn(a1, a1, M1, 0.05, method="sinkhorn_log", numItermax=big_iters, stopThr=0.0), max(1, repeats - 2))
    for method in ("auto", "log"):
        ours = median_time(lambda: sinkhorn(None, None, M1, 0.05, n_iters=big_iters, method=method), max(1, repeats - 2))
        rows.append({"case": f"one {n}x{n}, {big_iters} it, method={method}", "geossl s": ours, "reference s": pot, "reference": "POT sinkhorn_log", "speed-up": pot / ours})
    geomloss_note = "geomloss was not installed."
    try:
        import geomloss

        # geomloss solves the same problem (cost |x-y|^2/2, eps = blur^2) with eps-scaling, so its iteration count
        # differs: a reference for the time to a converged answer, not an equal-iteration comparison.
        loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.05**0.5, scaling=0.9, backend="tensorized", debias=False)
        ref = median_time(lambda: loss(x, y), max(1, repeats - 2))
        ours = median_time(lambda: sinkhorn(None, None, M1, 0.05, tol=1e-3, max_iter=2000, method="auto"), max(1, repeats - 2))
        rows.append({"case": f"one {n}x{n}, to tol 1e-3 (ours) / eps-scaling 0.9 (geomloss)", "geossl s": ours, "reference s": ref, "reference": f"geomloss {geomloss.__version__} tensorized", "speed-up": ref / ours})
        geomloss_note = "geomloss runs its own eps-scaling schedule, so that row compares times to an answer, not iterations."
    except ImportError:
        pass

    # 3. SSW to uniform vs pairwise uniformity, forward and forward+backward (how a loss is used)
    for N in (512, 2048, 8192):
        z = F.normalize(torch.randn(N, 128, generator=g), dim=1)
        ours = median_time(lambda: spherical_sliced_wasserstein_to_uniform(z, n_projections=200, seed=0), repeats)
        ref = median_time(lambda: wang_isola_uniformity(z), repeats)
        rows.append({"case": f"SSW-to-uniform vs Wang-Isola, N={N}, d=128, L=200, forward", "geossl s": ours, "reference s": ref, "reference": "pairwise Gaussian potential", "speed-up": ref / ours})
        zg = z.clone().requires_grad_()
        ours = median_time(lambda: spherical_sliced_wasserstein_to_uniform(zg, n_projections=200, seed=0).backward(), repeats)
        ref = median_time(lambda: wang_isola_uniformity(zg).backward(), repeats)
        rows.append({"case": f"SSW-to-uniform vs Wang-Isola, N={N}, d=128, L=200, forward+backward", "geossl s": ours, "reference s": ref, "reference": "pairwise Gaussian potential", "speed-up": ref / ours})

    notes = (
        "float32 on CPU, fixed iterations (no convergence checks on either side), medians. POT "
        f"{ot.__version__} with its torch backend on the same tensors. method=auto is the scaling solver with absorption "
        "(same iterates as the logsumexp solver, tested to 1e-12); method=log is the logsumexp solver. Targets: batched >= 5x "
        "and one large problem >= 1.5x against POT's log-domain solver, SSW-to-uniform >= 10x at N = 8192 "
        f"(O(L N (d + log N)) against O(N^2 d)). {geomloss_note}"
    )
    write_results("ot_speed", "geossl.ot speed", rows, ["case", "geossl s", "reference s", "reference", "speed-up"], notes)
    print(notes)


if __name__ == "__main__":
    main()
