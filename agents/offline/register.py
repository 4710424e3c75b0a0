"""Register two views of one photo and find where their content differs: the verifier's eyes.

`align(a, b)` finds the similarity map between image a and image b (b = a cropped at t and scaled
by r: a point p of a is at r * (p - t) in b), first coarsely (normalised cross-correlation of small
grey copies over a range of scales), then to a fraction of a pixel (phase correlation in a grid of
windows, fitted by least squares). `changes(a, b)` warps b into a's frame, matches b's tones to a's
(per-channel cubic fit, robust to a few changed pixels), and returns the blobs where the two still
differ clearly, ignoring the thin residue that resampling leaves along edges.
Nothing here reads how the images were made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.feature import match_template
from skimage.registration import phase_cross_correlation

COARSE_SIDE = 160  # longer side of image a for the coarse scale search
TAU = 28  # residual (0-255, after smoothing and tone matching) that counts as changed
NOISE_K = 6.0  # ... or this many robust noise spreads, whichever is larger


@dataclass
class Alignment:
    """b = a cropped at (tx, ty) (a pixels) and scaled by r; score = NCC of the coarse match."""

    r: float
    tx: float
    ty: float
    score: float

    def to_b(self, x: float, y: float) -> tuple[float, float]:
        """a coordinates -> b coordinates."""
        return self.r * (x - self.tx), self.r * (y - self.ty)


@dataclass
class Blob:
    """A region where two registered images differ: box in a's pixels, changed pixels, mean residual."""

    box: tuple[int, int, int, int]
    area: int
    strength: float


def grey(a: np.ndarray) -> np.ndarray:
    """Grey levels as float32."""
    return a.astype(np.float32).mean(axis=2) if a.ndim == 3 else a.astype(np.float32)


def _resize(g: np.ndarray, factor: float) -> np.ndarray:
    h, w = g.shape
    size = (max(4, round(w * factor)), max(4, round(h * factor)))
    return np.asarray(
        Image.fromarray(g).resize(size, Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR)
    )


def _coarse(a: np.ndarray, b: np.ndarray, scales: np.ndarray) -> Alignment | None:
    ga, gb = grey(a), grey(b)
    fa = min(1.0, COARSE_SIDE / max(ga.shape))
    sa = _resize(ga, fa)
    best: Alignment | None = None
    for r in scales:
        sb = _resize(gb, fa / r)  # b at a's coarse scale
        # a template no larger than 80% of a: for near-same-size views, the centre of b
        th, tw = min(sb.shape[0], int(0.8 * sa.shape[0])), min(sb.shape[1], int(0.8 * sa.shape[1]))
        if th < 8 or tw < 8:
            continue
        oy, ox = (sb.shape[0] - th) // 2, (sb.shape[1] - tw) // 2
        tpl = sb[oy : oy + th, ox : ox + tw]
        if tpl.std() < 1e-3:
            continue
        ncc = match_template(sa, tpl)
        iy, ix = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        score = float(ncc[iy, ix])
        if best is None or score > best.score:
            # template origin in b (coarse px) is (ox, oy); it sits at (ix, iy) in coarse a
            tx = (ix - ox) / fa
            ty = (iy - oy) / fa
            best = Alignment(float(r), tx, ty, score)
    return best


def warp(b: np.ndarray, al: Alignment, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """b resampled into a's frame (shape (H, W)), float32, and the mask of a's pixels that b covers."""
    h, w = shape
    yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    qy, qx = al.r * (yy - al.ty), al.r * (xx - al.tx)
    valid = ((qy >= 1) & (qy <= b.shape[0] - 2)) & ((qx >= 1) & (qx <= b.shape[1] - 2))
    src = b.astype(np.float32)
    if al.r > 1.3:  # b is finer than a: blur before sampling so it is not aliased
        src = ndimage.gaussian_filter(src, sigma=(0.45 * al.r, 0.45 * al.r, 0) if src.ndim == 3 else 0.45 * al.r)
    chans = [src[..., c] for c in range(src.shape[2])] if src.ndim == 3 else [src]
    # PIL samples output pixel centres: offsetting by (1 - r) / 2 maps index x to r * (x - tx) exactly
    r = al.r
    coeffs = (r, 0.0, -r * al.tx + 0.5 * (1 - r), 0.0, r, -r * al.ty + 0.5 * (1 - r))
    out = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(c)).transform(
                (w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
            )
        )
        for c in chans
    ]
    return (np.stack(out, axis=-1) if src.ndim == 3 else out[0]), valid


def _refine(a: np.ndarray, b: np.ndarray, al: Alignment, grid: int = 4) -> Alignment:
    """Sub-pixel refinement: local shifts in a grid of windows, fitted by a scale and a translation."""
    ga = grey(a)
    bw, valid = warp(grey(b), al, ga.shape)
    ys, xs = np.nonzero(valid)
    if len(ys) == 0:
        return al
    oy, ox = int(ys.min()), int(xs.min())  # the part of a that b covers (all of it, or a close-up's area)
    h, w = int(ys.max()) + 1 - oy, int(xs.max()) + 1 - ox
    win = max(24, min(h, w) // (grid + 1))
    ps, qs = [], []
    for gy in range(grid):
        for gx in range(grid):
            cy, cx = oy + int((gy + 0.5) * h / grid), ox + int((gx + 0.5) * w / grid)
            y0, x0 = max(0, cy - win // 2), max(0, cx - win // 2)
            wa, wb, wv = (
                ga[y0 : y0 + win, x0 : x0 + win],
                bw[y0 : y0 + win, x0 : x0 + win],
                valid[y0 : y0 + win, x0 : x0 + win],
            )
            if wa.shape != (win, win) or wv.mean() < 0.98 or wa.std() < 4:
                continue
            shift, _, _ = phase_cross_correlation(wa, wb, upsample_factor=8, normalization=None)
            if np.abs(shift).max() > win / 4:
                continue
            p = (x0 + win / 2, y0 + win / 2)
            q = al.to_b(p[0] - shift[1], p[1] - shift[0])
            ps.append(p)
            qs.append(q)
    if len(ps) < 3:
        return al
    P, Q = np.array(ps), np.array(qs)
    for _ in range(2):  # fit q = r' p + c, drop outliers, refit
        n = len(P)
        A = np.zeros((2 * n, 3))
        A[:n, 0], A[:n, 1] = P[:, 0], 1
        A[n:, 0], A[n:, 2] = P[:, 1], 1
        y = np.concatenate([Q[:, 0], Q[:, 1]])
        sol, *_ = np.linalg.lstsq(A, y, rcond=None)
        res = np.abs(A @ sol - y).reshape(2, n).max(axis=0)
        keep = res <= max(1.0, 2.5 * float(np.median(res)))
        if keep.all() or keep.sum() < 3:
            break
        P, Q = P[keep], Q[keep]
    r, cx, cy = sol
    if r <= 0:
        return al
    return Alignment(float(r), float(-cx / r), float(-cy / r), al.score)


def align(a: np.ndarray, b: np.ndarray, zoom: tuple[float, float] = (0.92, 1.08), steps: int = 17) -> Alignment | None:
    """The map from a to b (b's pixels per a pixel within `zoom`), or None when b is not found in a."""
    scales = np.geomspace(zoom[0], zoom[1], steps)
    al = _coarse(a, b, scales)
    if al is None or al.score < 0.5:
        return al
    for _ in range(2):
        al = _refine(a, b, al)
    return al


def _tone_match(src: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """`src` with each channel mapped onto `ref`'s tones by a robust cubic fit over the valid pixels."""
    out = np.empty_like(src, dtype=np.float32)
    idx = np.flatnonzero(valid.ravel())[::23]  # ~50k pixels: plenty for 4 coefficients
    for c in range(src.shape[2]):
        x, y = src[..., c].ravel()[idx] / 255.0, ref[..., c].ravel()[idx].astype(np.float32) / 255.0
        fit = np.polynomial.Polynomial.fit(x, y, 3)  # scaled domain: well conditioned
        for _ in range(2):
            res = np.abs(fit(x) - y)
            keep = res <= np.quantile(res, 0.95)
            fit = np.polynomial.Polynomial.fit(x[keep], y[keep], 3)
        out[..., c] = fit(src[..., c] / 255.0) * 255.0
    return out


def to_frame(a: np.ndarray, b: np.ndarray, al: Alignment) -> tuple[np.ndarray, np.ndarray]:
    """b warped into a's frame with a's tones (float32 (H, W, 3)), and where it is defined."""
    bw, valid = warp(b, al, a.shape[:2])
    valid = ndimage.binary_erosion(valid, iterations=3)
    if valid.sum() < 2000:
        return bw, valid
    return _tone_match(bw, a, valid), valid


def smooth(a: np.ndarray) -> np.ndarray:
    """The light blur every residual is computed on (it removes JPEG and resampling noise)."""
    return ndimage.gaussian_filter(a.astype(np.float32), (1.2, 1.2, 0))


def residual(a: np.ndarray, b: np.ndarray, al: Alignment) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) smoothed largest-channel difference of a and b-in-a's-frame, and where it is defined."""
    bt, valid = to_frame(a, b, al)
    if valid.sum() < 2000:
        return np.zeros(a.shape[:2], np.float32), valid
    sa = smooth(a)
    return edge_aware(sa, smooth(bt), valid)


CLIP = 250  # near-white (or near-black) pixels: exposure changes clip them differently, so they say nothing
EDGE_SCALE = 64.0  # residual is divided by 1 + |gradient| / EDGE_SCALE: sub-pixel misregistration lives on edges


def _cmax(x: np.ndarray) -> np.ndarray:
    """Largest channel of (H, W, 3): elementwise maxima, several times faster than .max(axis=2)."""
    return np.maximum(np.maximum(x[..., 0], x[..., 1]), x[..., 2])


def edge_aware(sa: np.ndarray, sb: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest-channel |sa - sb|, damped on strong edges, zero where undefined or clipped in either image.

    Clipping is judged per channel: a pale sea or ice clips in blue first under a brighter shot, and a
    green island set down on it still differs in red and green (it was invisible when one clipped
    channel blanked the pixel).
    """
    diff = np.abs(sa - sb)
    unclipped = (sa < CLIP) & (sb < CLIP) & (sa > 255 - CLIP) & (sb > 255 - CLIP)
    diff[~unclipped] = 0
    d = _cmax(diff)
    ga = (sa[..., 0] + sa[..., 1] + sa[..., 2]) / 3.0
    grad = np.hypot(ndimage.sobel(ga, 0), ndimage.sobel(ga, 1)) / 4.0
    d /= 1.0 + grad / EDGE_SCALE
    ok = valid & (unclipped[..., 0] | unclipped[..., 1] | unclipped[..., 2])
    d[~ok] = 0
    return d, ok


def changes(a: np.ndarray, b: np.ndarray, al: Alignment, min_frac: float = 2e-5) -> list[Blob]:
    """Blobs where registered a and b differ clearly, largest first (boxes in a's pixels)."""
    d, valid = residual(a, b, al)
    return blobs_of(d, valid, min_frac)


def blobs_of(d: np.ndarray, valid: np.ndarray, min_frac: float = 2e-5) -> list[Blob]:
    """Blobs of a residual map: above a noise-aware threshold, thin edge residue opened away, grouped."""
    if not valid.any():
        return []
    vals = d[valid]
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) + 1e-3
    tau = max(TAU, med + NOISE_K * 1.4826 * mad)
    mask = d > tau
    mask = ndimage.binary_opening(mask, structure=np.ones((2, 2), bool), iterations=1)  # drops 1-px lines
    if not mask.any():
        return []
    h, w = mask.shape
    reach = max(3, round(0.006 * max(h, w)))
    labels, n = ndimage.label(ndimage.binary_dilation(mask, iterations=reach))
    min_px = max(10, round(min_frac * h * w))
    blobs = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        m = (labels[sl] == i) & mask[sl]
        area = int(m.sum())
        if area < min_px:
            continue
        ys, xs = np.nonzero(m)
        y0, x0 = sl[0].start, sl[1].start
        box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
        blobs.append(Blob(box, area, float(d[sl][m].mean())))
    return sorted(blobs, key=lambda bl: -bl.area)
