"""Finding and reading the pretrained weights of the metric networks.

Nothing here downloads. Users already have these files in the ecosystem's cache under
their standard names (torchvision and pytorch-fid put them in
``$TORCH_HOME/hub/checkpoints``), so we look them up there, or in the folder given as
``weights_dir=URI``, or at one explicit ``path=URI`` per weight. A missing file raises a
``FileNotFoundError`` that names the file, where it was expected and how to point at it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle

import torch

from ..storage import filesystem_for, join_uri, read_bytes

# Short name -> standard file name (relative to weights_dir), as listed in docs/DESIGN.md.
STANDARD_WEIGHT_FILES: dict[str, str] = {
    "inception": "pt_inception-2015-12-05-6726825d.pth",  # pytorch-fid's TF-ported FID InceptionV3
    "vgg16": "vgg16-397923af.pth",  # torchvision VGG16 (LPIPS backbone)
    "alexnet": "alexnet-owt-7be5be79.pth",  # torchvision AlexNet (LPIPS backbone option)
    "lpips_vgg": "vgg.pth",  # LPIPS v0.1 linear heads for VGG
    "lpips_alex": "alex.pth",  # LPIPS v0.1 linear heads for AlexNet
    "ade20k": "ade20k/ade20k-resnet50dilated-ppm/encoder_epoch_20.pth",  # HRF perceptual loss encoder
}


def default_weights_dir() -> str:
    """``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME`` defaulting to ``~/.cache/torch``):
    where torchvision and pytorch-fid cache their downloads."""
    # torch.hub.get_dir() applies TORCH_HOME / XDG_CACHE_HOME exactly as the downloaders do.
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _lpips_package_dir() -> str | None:
    """``.../lpips/weights/v0.1`` of an installed ``lpips`` package (it ships the heads), without importing it."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", "v0.1")


def _exists(uri: str) -> bool:
    fs, path = filesystem_for(uri)
    return fs.exists(path)


def resolve_weight(name: str, weights_dir: str | None = None, path: str | None = None) -> str:
    """Return the path/URI of a metric network's weight file.

    ``name`` is a key of ``STANDARD_WEIGHT_FILES`` (``"inception"``, ``"vgg16"``,
    ``"alexnet"``, ``"lpips_vgg"``, ``"lpips_alex"``, ``"ade20k"``) or a standard file name
    itself. ``path`` (explicit file, local or URI) wins over ``weights_dir`` (folder,
    default ``default_weights_dir()``). The LPIPS heads are also found in an installed
    ``lpips`` package, which ships them. Raises ``FileNotFoundError`` naming the file,
    the folder where it was expected, and the ``weights_dir=`` / explicit-path overrides.
    """
    file_name = STANDARD_WEIGHT_FILES.get(name, name)
    if path:
        if not _exists(path):
            raise FileNotFoundError(f"weight file for {name!r} not found at the explicit path {path} "
                                    f"(expected the standard file {file_name})")
        return path
    folder = weights_dir or default_weights_dir()
    candidate = join_uri(folder, file_name)
    if _exists(candidate):
        return candidate
    package_dir = _lpips_package_dir() if name in ("lpips_vgg", "lpips_alex") else None
    if package_dir and os.path.exists(os.path.join(package_dir, file_name)):
        return os.path.join(package_dir, file_name)
    also = " (nor in the installed lpips package)" if name in ("lpips_vgg", "lpips_alex") else ""
    raise FileNotFoundError(
        f"weight file {file_name} not found in {folder}{also}: expected {candidate}. "
        f"Nothing is downloaded here; copy the file there, pass weights_dir=URI of the folder "
        f"that holds it, or give its explicit path/URI.")


def read_weights(uri: str) -> tuple[dict[str, torch.Tensor], str]:
    """Read a plain ``state_dict`` file (local or URI) with ``torch.load(weights_only=True)``
    onto the CPU. Returns ``(state_dict, sha256 hex digest of the file bytes)``; the digest
    identifies the model in feature caches. Raises ``ValueError`` naming the file when it is
    not a tensor dictionary (it never runs pickled code)."""
    data = read_bytes(uri)
    try:
        # map_location: the LPIPS heads were saved from CUDA tensors.
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"cannot read weight file {uri} as a plain state_dict: {exc}") from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"weight file {uri} does not hold a plain state_dict of tensors")
    return dict(state), hashlib.sha256(data).hexdigest()
