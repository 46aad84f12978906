"""Checkpoints: versioned dicts written atomically, read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cxrlab import __version__
from cxrlab.errors import CxrlabError
from cxrlab.utils.fs import atomic_path

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, state_dicts, numbers, strings, lists, dicts) atomically.

    ``version`` and ``cxrlab_version`` are added. A crash mid-write leaves the
    previous file intact.
    """
    path = Path(path)
    payload = {"version": CHECKPOINT_VERSION, "cxrlab_version": __version__, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``: no arbitrary code runs).

    Raises:
        CxrlabError: if the file is missing, not a checkpoint, or of a newer version.
    """
    path = Path(path)
    if not path.is_file():
        raise CxrlabError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CxrlabError(f"cannot load checkpoint {path}: {error}") from error
    if not isinstance(state, dict) or "version" not in state:
        raise CxrlabError(f"{path} is not a cxrlab checkpoint")
    if state["version"] > CHECKPOINT_VERSION:
        raise CxrlabError(
            f"{path} was written by a newer cxrlab ({state.get('cxrlab_version')}); upgrade"
        )
    return state
