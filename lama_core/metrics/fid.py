"""Fréchet Inception Distance: feature statistics, the distance, and a statistics cache.

Statistics are float64 sums (``n``, sum of features, sum of outer products), so batches
and workers merge exactly and ``mean`` / ``cov`` (unbiased, as ``np.cov``, which
pytorch-fid and LaMa use) come out at the end. The distance needs no scipy: the trace of
``sqrtm(C1 C2)`` is computed from two symmetric eigendecompositions, which stays real
and stable where ``scipy.linalg.sqrtm`` of the non-symmetric product needs an offset
(singular covariances: fewer images than 2048 dimensions, as in small hole-area bins).

The cache stores arrays as ``.npz`` under a cache-dir URI, keyed by ``content_hash`` of
the images plus the model's identity, so an evaluation sweep over many checkpoints
computes the ground-truth features once.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..storage import filesystem_for, join_uri, read_bytes, write_atomic


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 sqrt(C1 C2))`` in float64.

    ``mu*``: (D,), ``cov*``: (D, D) symmetric positive semi-definite. Uses
    ``tr sqrt(C1 C2) = sum sqrt(eig(sqrt(C1) C2 sqrt(C1)))`` (same eigenvalues, but a
    symmetric PSD matrix), with tiny negative eigenvalues from round-off clipped to 0.
    The result is clipped at 0 (a distance; identical statistics give ~1e-12 either way).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, cov {cov1.shape} {cov2.shape}")
    evals, evecs = np.linalg.eigh((cov1 + cov1.T) / 2)
    sqrt_cov1 = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    middle = sqrt_cov1 @ cov2 @ sqrt_cov1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean), 0.0)


@dataclass
class FeatureStats:
    """Streaming statistics of feature vectors: ``n``, ``total`` (D,) and ``total_outer``
    (D, D), all float64. ``mean`` (D,) and ``cov`` (D, D, unbiased; NaN below 2 samples)
    are derived. Merge partial statistics with ``merge``."""

    n: int
    total: np.ndarray
    total_outer: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> "FeatureStats":
        """No samples yet, for ``dim``-dimensional features."""
        return cls(0, np.zeros(dim, np.float64), np.zeros((dim, dim), np.float64))

    @classmethod
    def from_features(cls, features: np.ndarray | torch.Tensor) -> "FeatureStats":
        """Statistics of ``features`` (N, D), any float dtype."""
        features = _as_float64(features)
        return cls(features.shape[0], features.sum(axis=0), features.T @ features)

    def update(self, features: np.ndarray | torch.Tensor) -> "FeatureStats":
        """Add a batch of features (N, D) in place; returns self."""
        features = _as_float64(features)
        self.n += features.shape[0]
        self.total += features.sum(axis=0)
        self.total_outer += features.T @ features
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """New statistics of both sample sets."""
        return FeatureStats(self.n + other.n, self.total + other.total, self.total_outer + other.total_outer)

    @property
    def mean(self) -> np.ndarray:
        """(D,) float64; NaN without samples."""
        return self.total / self.n if self.n else np.full_like(self.total, np.nan)

    @property
    def cov(self) -> np.ndarray:
        """(D, D) float64, unbiased (divides by n - 1, as ``np.cov``); NaN below 2 samples."""
        if self.n < 2:
            return np.full_like(self.total_outer, np.nan)
        mean = self.mean
        return (self.total_outer - self.n * np.outer(mean, mean)) / (self.n - 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez`` / caches."""
        return {"n": np.asarray(self.n, np.int64), "total": self.total, "total_outer": self.total_outer}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "FeatureStats":
        """Inverse of ``to_arrays``."""
        return cls(int(arrays["n"]), np.asarray(arrays["total"], np.float64), np.asarray(arrays["total_outer"], np.float64))


def _as_float64(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if torch.is_tensor(features):
        features = features.detach().cpu().numpy()
    features = np.asarray(features, np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be N x D, got shape {features.shape}")
    return features


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two sets given their statistics; NaN when either has fewer than 2 samples
    (as LaMa reports a hole-area bin with a single image)."""
    if a.n < 2 or b.n < 2:
        return float("nan")
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def fid_from_features(features1: np.ndarray | torch.Tensor, features2: np.ndarray | torch.Tensor) -> float:
    """FID between two feature sets (N1, D) and (N2, D), float64; NaN below 2 samples in either.

    With fewer samples than dimensions (a hole-area bin of a few hundred images, D = 2048)
    it works in sample space, exactly and much faster: with centred, scaled features
    ``A`` (N1 x D) and ``B`` (N2 x D), ``C1 = A^T A`` and ``C2 = B^T B``, the eigenvalues of
    ``C1 C2`` are the squared singular values of ``A B^T``, so ``tr sqrt(C1 C2)`` is its
    nuclear norm.
    """
    x1, x2 = _as_float64(features1), _as_float64(features2)
    (n1, d), n2 = x1.shape, x2.shape[0]
    if x2.shape[1] != d:
        raise ValueError(f"feature dimensions differ: {x1.shape} vs {x2.shape}")
    if min(n1, n2) >= d or min(n1, n2) < 2:
        return fid_from_stats(FeatureStats.from_features(x1), FeatureStats.from_features(x2))
    mu1, mu2 = x1.mean(axis=0), x2.mean(axis=0)
    a, b = (x1 - mu1) / np.sqrt(n1 - 1), (x2 - mu2) / np.sqrt(n2 - 1)
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return max(float(diff @ diff + np.sum(a * a) + np.sum(b * b) - 2 * tr_covmean), 0.0)


def content_hash(*parts: bytes | np.ndarray | torch.Tensor | str, model_id: str) -> str:
    """SHA-256 hex digest identifying data plus the model that will see it: a cache key.
    Arrays and tensors contribute dtype, shape and bytes (so equal bytes with another shape
    differ); strings and bytes contribute themselves."""
    digest = hashlib.sha256(f"model={model_id}\n".encode())
    for part in parts:
        if torch.is_tensor(part):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part)
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(part.tobytes())
        elif isinstance(part, str):
            digest.update(part.encode())
        else:
            digest.update(bytes(part))
        digest.update(b"\0")
    return digest.hexdigest()


def load_cached_arrays(cache_dir: str, key: str, endpoint_url: str | None = None,
                       max_bytes: int | None = None) -> dict[str, np.ndarray] | None:
    """The arrays stored as ``CACHE_DIR/KEY.npz`` (a local folder or URI), or None when
    there is no such entry or it cannot be read (a damaged entry is recomputed by the
    caller). ``max_bytes``: an entry whose file, or whose arrays once unpacked (the sizes
    its zip directory declares), would be larger is not read: None. Never unpickles."""
    import zipfile

    uri = join_uri(cache_dir, f"{key}.npz")
    fs, path = filesystem_for(uri, endpoint_url)
    if not fs.exists(path):
        return None
    try:
        if max_bytes is not None and fs.size(path) > max_bytes:
            return None
        buffer = io.BytesIO(read_bytes(uri, endpoint_url))
        if max_bytes is not None:
            with zipfile.ZipFile(buffer) as archive:
                if sum(info.file_size for info in archive.infolist()) > max_bytes:
                    return None  # a compressed entry that would unpack past the bound
            buffer.seek(0)
        with np.load(buffer, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return None


def store_cached_arrays(cache_dir: str, key: str, arrays: dict[str, np.ndarray],
                        endpoint_url: str | None = None) -> str:
    """Store ``arrays`` as ``CACHE_DIR/KEY.npz``, atomically (``storage.write_atomic``:
    concurrent readers never see half a file). Returns the entry's URI."""
    uri = join_uri(cache_dir, f"{key}.npz")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    fs, path = filesystem_for(uri, endpoint_url)
    write_atomic(fs, path, buffer.getvalue())
    return uri


def cached_arrays(cache_dir: str | None, key: str,
                  compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return the arrays stored as ``CACHE_DIR/KEY.npz``, or ``compute()`` them and store
    them there. ``cache_dir`` is a local folder or URI; ``None`` disables caching. An
    unreadable entry is recomputed and overwritten."""
    if not cache_dir:
        return compute()
    arrays = load_cached_arrays(cache_dir, key)
    if arrays is None:
        arrays = compute()
        store_cached_arrays(cache_dir, key, arrays)
    return arrays


def cached_stats(cache_dir: str | None, key: str, compute: Callable[[], FeatureStats]) -> FeatureStats:
    """``FeatureStats`` through ``cached_arrays``: e.g. the real-image statistics of an
    evaluation set, keyed by ``content_hash(..., model_id=inception.model_id)``."""
    return FeatureStats.from_arrays(cached_arrays(cache_dir, key, lambda: compute().to_arrays()))
