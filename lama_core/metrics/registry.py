"""Metrics registered by name, in the spirit of stylegan2-ada's ``metric_main``.

A metric is one function ``(pred, target, mask, ctx) -> {column: np.ndarray}`` giving
per-image columns for a batch (scalars ``(N,)``, or feature rows ``(N, D)``), plus a
``reduce`` turning the columns of a set of images into summary values. Per-image metrics
(psnr, ssim, l1, lpips) reduce to the mean of each column; set-level metrics (fid) carry
features per image and reduce them to one number per set, so the same rows give the FID
of every hole-area bin. Adding a metric is one decorated function.

Columns that depend on the ground truth alone (fid's ``fid_features_real``) are a metric's
``reference_columns``, computed by its ``reference`` function: they are the same for every
checkpoint of a sweep, so a caller that caches them per image asks ``compute_metrics`` to
leave them out (``references=False``) and computes only the missing ones with
``compute_references``.

All networks and options live in one ``MetricContext``, which loads each network once.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import torch

from .fid import cached_arrays, content_hash, fid_from_features
from .pixel import l1, psnr, ssim

if TYPE_CHECKING:  # the networks import torchvision (seconds): only when a metric needs them
    from .inception import FIDInceptionV3
    from .lpips import LPIPS

Columns = dict[str, np.ndarray]


class MetricContext:
    """Options shared by all metrics, and the networks they need, loaded on first use.

    ``device``: where metrics run. ``weights_dir``: folder/URI holding the standard weight
    files (default ``$TORCH_HOME/hub/checkpoints``). ``weight_paths``: explicit path/URI per
    weight name (``"inception"``, ``"vgg16"``, ``"alexnet"``, ``"lpips_vgg"``,
    ``"lpips_alex"``), overriding ``weights_dir``. ``lpips_net``: ``"vgg"`` (the paper's) or
    ``"alex"``. ``cache_dir``: folder/URI caching Inception features of ground-truth
    batches (keyed by their content), or None.
    """

    def __init__(self, device: str | torch.device = "cpu", weights_dir: str | None = None,
                 weight_paths: Mapping[str, str] | None = None, lpips_net: str = "vgg",
                 cache_dir: str | None = None):
        self.device = torch.device(device)
        self.weights_dir = weights_dir
        self.weight_paths = dict(weight_paths or {})
        self.lpips_net = lpips_net
        self.cache_dir = cache_dir

    @functools.cached_property
    def inception(self) -> FIDInceptionV3:
        """The FID InceptionV3 on ``device`` (weight ``"inception"``)."""
        from .inception import load_inception

        return load_inception(self.weights_dir, self.weight_paths.get("inception"), self.device)

    @functools.cached_property
    def lpips(self) -> LPIPS:
        """LPIPS with ``lpips_net`` on ``device`` (weights ``"vgg16"``/``"alexnet"`` and ``"lpips_<net>"``)."""
        from .lpips import load_lpips

        backbone = "vgg16" if self.lpips_net == "vgg" else "alexnet"
        return load_lpips(self.lpips_net, self.weights_dir, self.weight_paths.get(backbone),
                          self.weight_paths.get(f"lpips_{self.lpips_net}"), self.device)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    finite_or_inf = values[~np.isnan(values)]
    return float(finite_or_inf.mean()) if finite_or_inf.size else float("nan")


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``compute`` per batch, ``columns`` it gives (with those of
    ``reference``), ``reduce`` from those columns (over any subset of rows) to summary
    values, and ``reference(target, ctx)``: the ``reference_columns``, which depend on the
    ground truth alone."""

    name: str
    compute: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, MetricContext], Columns]
    columns: tuple[str, ...]
    reduce: Callable[[Mapping[str, np.ndarray]], dict[str, float]] | None = None
    reference: Callable[[torch.Tensor, MetricContext], Columns] | None = None
    reference_columns: tuple[str, ...] = ()

    def summarize(self, columns: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Summary values of a set of rows: ``reduce``, or by default the mean of each
        column ignoring NaN (hole metrics of images without a hole)."""
        if self.reduce is not None:
            return self.reduce(columns)
        return {c: _nanmean(columns[c]) for c in self.columns}


METRICS: dict[str, Metric] = {}


def register_metric(name: str, columns: Sequence[str] | None = None,
                    reduce: Callable[[Mapping[str, np.ndarray]], dict[str, float]] | None = None,
                    reference: Callable[[torch.Tensor, MetricContext], Columns] | None = None,
                    reference_columns: Sequence[str] = ()):
    """Decorator registering ``fn(pred, target, mask, ctx) -> {column: array}`` under
    ``name`` in ``METRICS``. ``columns`` (all the metric's columns, ``reference_columns``
    included) defaults to ``(name,)``; ``reduce`` defaults to the per-column mean (a
    per-image metric); ``reference(target, ctx) -> {column: array}`` gives the
    ``reference_columns``."""
    def decorator(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = Metric(name, fn, tuple(columns or (name,)), reduce, reference, tuple(reference_columns))
        return fn
    return decorator


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


@register_metric("psnr", columns=("psnr", "psnr_hole"))
def _psnr(pred, target, mask, ctx):
    return {"psnr": _numpy(psnr(pred, target)), "psnr_hole": _numpy(psnr(pred, target, mask))}


@register_metric("ssim", columns=("ssim", "ssim_hole"))
def _ssim(pred, target, mask, ctx):
    return {"ssim": _numpy(ssim(pred, target)), "ssim_hole": _numpy(ssim(pred, target, mask))}


@register_metric("l1", columns=("l1", "l1_hole"))
def _l1(pred, target, mask, ctx):
    return {"l1": _numpy(l1(pred, target)), "l1_hole": _numpy(l1(pred, target, mask))}


@register_metric("lpips")
def _lpips(pred, target, mask, ctx):
    return {"lpips": _numpy(ctx.lpips(pred, target)).astype(np.float64)}


def _reduce_fid(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"fid": fid_from_features(_stack(columns["fid_features_fake"]), _stack(columns["fid_features_real"]))}


def _fid_reference(target, ctx):
    # Ground-truth features are the same for every checkpoint of a sweep: cache them by content.
    key = content_hash(target, model_id=ctx.inception.model_id)
    real = cached_arrays(ctx.cache_dir, key, lambda: {"features": _numpy(ctx.inception(target))})["features"]
    return {"fid_features_real": real}


@register_metric("fid", columns=("fid_features_fake", "fid_features_real"), reduce=_reduce_fid,
                 reference=_fid_reference, reference_columns=("fid_features_real",))
def _fid(pred, target, mask, ctx):
    return {"fid_features_fake": _numpy(ctx.inception(pred))}


def _stack(column) -> np.ndarray:
    """A feature column as (N, D): from a 2-D array, or a list/Series of 1-D rows (Parquet)."""
    array = np.asarray(column)
    if array.dtype == object or array.ndim == 1:
        return np.stack([np.asarray(row, np.float64) for row in column]) if len(column) else np.zeros((0, 0))
    return array


def _registered(names: Sequence[str]) -> list[Metric]:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; registered: {sorted(METRICS)}")
    return [METRICS[n] for n in names]


def compute_metrics(names: Sequence[str], pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    ctx: MetricContext, references: bool = True) -> Columns:
    """Per-image columns of the metrics ``names`` for one batch.

    ``pred`` (the result, known pixels pasted back), ``target`` (ground truth): float
    ``N x 3 x H x W`` in [0, 1]; ``mask``: ``N x 1 x H x W``, 1 = hole. Returns numpy
    columns: scalars ``(N,)`` float64 (``psnr``, ``psnr_hole``, ``ssim``, ``ssim_hole``,
    ``l1``, ``l1_hole``, ``lpips``) and, for fid, ``fid_features_fake`` /
    ``fid_features_real`` ``(N, 2048)`` float32. ``references=False`` leaves out the
    metrics' ``reference_columns`` (a caller with its own per-image cache of them). Raises
    ``KeyError`` for an unknown name.
    """
    metrics = _registered(names)
    pred, target, mask = (t.to(ctx.device) for t in (pred, target, mask))
    out: Columns = {}
    with torch.no_grad():
        for metric in metrics:
            out.update(metric.compute(pred, target, mask, ctx))
            if references and metric.reference is not None:
                out.update(metric.reference(target, ctx))
    return out


def reference_columns(names: Sequence[str]) -> list[str]:
    """The ``reference_columns`` of the metrics ``names``, in order (fid:
    ``fid_features_real``). Raises ``KeyError`` for an unknown name."""
    return [c for metric in _registered(names) for c in metric.reference_columns]


def compute_references(names: Sequence[str], target: torch.Tensor, ctx: MetricContext) -> Columns:
    """The ``reference_columns`` of the metrics ``names`` for ground truth ``target``
    (float ``N x 3 x H x W`` in [0, 1]): numpy columns of ``N`` rows (fid:
    ``fid_features_real`` ``(N, 2048)`` float32). Raises ``KeyError`` for an unknown name."""
    metrics = _registered(names)
    target = target.to(ctx.device)
    out: Columns = {}
    with torch.no_grad():
        for metric in metrics:
            if metric.reference is not None:
                out.update(metric.reference(target, ctx))
    return out
