"""Optimal transport in PyTorch: entropic (balanced, unbalanced, batched, distributed), exact, Gromov-Wasserstein,
co-optimal and sliced solvers, and the self-optimal-transport feature transform.

Names follow POT (``a``, ``b``, ``M``, ``reg``, ``reg_m``; ``f`` returns the plan, ``f2`` the value).
Everything is device- and dtype-preserving and differentiable. Spec: ``specs/ot.md``.
"""

from geossl.ot._result import SinkhornResult
from geossl.ot.coot import COOTResult, co_optimal_transport, co_optimal_transport2
from geossl.ot.distributed import distributed_sinkhorn
from geossl.ot.emd import EMDResult, emd, emd2
from geossl.ot.gromov import GromovResult, gromov_wasserstein, gromov_wasserstein2
from geossl.ot.self_transport import SelfTransport, self_transport, self_transport_log_plan
from geossl.ot.sinkhorn import sinkhorn, sinkhorn2
from geossl.ot.sliced import (
    sliced_wasserstein,
    spherical_sliced_wasserstein,
    spherical_sliced_wasserstein_to_uniform,
    wasserstein_1d,
    wasserstein_circle,
)
from geossl.ot.sphere_uniform import sliced_wasserstein_to_uniform_sphere
from geossl.ot.unbalanced import sinkhorn_unbalanced, sinkhorn_unbalanced2

__all__ = [
    "COOTResult",
    "EMDResult",
    "GromovResult",
    "co_optimal_transport",
    "co_optimal_transport2",
    "emd",
    "emd2",
    "gromov_wasserstein",
    "gromov_wasserstein2",
    "SelfTransport",
    "SinkhornResult",
    "distributed_sinkhorn",
    "self_transport",
    "self_transport_log_plan",
    "sinkhorn",
    "sinkhorn2",
    "sinkhorn_unbalanced",
    "sinkhorn_unbalanced2",
    "sliced_wasserstein",
    "spherical_sliced_wasserstein",
    "spherical_sliced_wasserstein_to_uniform",
    "sliced_wasserstein_to_uniform_sphere",
    "wasserstein_1d",
    "wasserstein_circle",
]
