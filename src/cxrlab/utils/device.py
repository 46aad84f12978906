"""Device choice and mixed precision, the same way for every trainer."""

from __future__ import annotations

import contextlib

import torch

from cxrlab.errors import CxrlabError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given.

    Raises:
        CxrlabError: if CUDA is asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CxrlabError(
            f"--device {name}: CUDA is not available on this machine; use --device cpu or auto"
        )
    return device


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op on CPU (CPU autocast slows small convnets down)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
