"""Seamless (Poisson) blending of a patch into a photo, the way a healing brush or a clone stamp does.

Inside a rectangle we solve Laplace(f) = Laplace(guide) with f fixed to the destination on the
rectangle's border, where the guide is the source patch under the mask and the destination
elsewhere. The pasted texture keeps its gradients while its colour and brightness follow the
surroundings, so nothing looks pasted on. A rectangle with Dirichlet borders diagonalises under
the type-I discrete sine transform: the solve is two DSTs, no iteration.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dstn, idstn


def _neg_laplacian(a: np.ndarray) -> np.ndarray:
    """4 a[i,j] - its 4 neighbours, on the interior of (H+2, W+2, C) -> (H, W, C)."""
    return 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]


def blend(dest: np.ndarray, src: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`src` blended into `dest` where `mask`; all (H+2, W+2[, 3]) with a 1-px border kept from `dest`.

    Returns the blended (H+2, W+2, 3) uint8 window; pixels outside `mask` stay (nearly) `dest`.
    """
    d = dest.astype(np.float32)
    s = src.astype(np.float32)
    m = mask[1:-1, 1:-1, None]
    g = np.where(m, _neg_laplacian(s), _neg_laplacian(d))  # (H, W, 3) guidance
    rhs = g.copy()
    rhs[0] += d[0, 1:-1]
    rhs[-1] += d[-1, 1:-1]
    rhs[:, 0] += d[1:-1, 0]
    rhs[:, -1] += d[1:-1, -1]
    h, w = rhs.shape[:2]
    ky = 2 - 2 * np.cos(np.pi * np.arange(1, h + 1) / (h + 1))  # (H,) eigenvalues of the 1-D operator
    kx = 2 - 2 * np.cos(np.pi * np.arange(1, w + 1) / (w + 1))  # (W,)
    denom = (ky[:, None] + kx[None, :])[..., None]
    f = idstn(dstn(rhs, type=1, axes=(0, 1)) / denom, type=1, axes=(0, 1))
    out = d.copy()
    out[1:-1, 1:-1] = f
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
