"""Device choice and mixed precision, the same way for every trainer."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cxrlab.errors import CxrlabError

if TYPE_CHECKING:  # torch is imported by the functions that need it: configs stay light
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given.

    Raises:
        CxrlabError: if CUDA is asked for but not available.
    """
    import torch

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
    import torch

    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: ``--precision`` choices: ``auto`` is bf16 mixed precision on CUDA and float32 on the
#: CPU; ``bf16`` asks for bf16 autocast on the CPU too (faster on CPUs with bf16 units,
#: e.g. AVX512-BF16; convolutions then round like a GPU's), ``32`` for float32 on CUDA.
PRECISIONS = ("auto", "32", "bf16")


def make_fabric(device_name: str = "auto", devices: int = 1, precision: str = "auto"):
    """The Lightning Fabric both trainers run on: ``devices`` data-parallel processes on
    the device type of ``device_name`` (DDP on CUDA, spawned DDP with gloo on CPU), with
    ``precision`` (see :data:`PRECISIONS`).

    Raises:
        CxrlabError: if CUDA is asked for but not available, ``devices`` < 1, or the
            precision is not known.
    """
    from lightning_fabric import Fabric

    if devices < 1:
        raise CxrlabError(f"--devices must be at least 1, got {devices}")
    if precision not in PRECISIONS:
        raise CxrlabError(
            f"--precision {precision!r} is not known; choose one of {', '.join(PRECISIONS)}"
        )
    device = resolve_device(device_name)
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    if devices > 1:
        strategy = "ddp" if accelerator == "cuda" else "ddp_spawn"
    else:
        strategy = "auto"
    if precision == "auto":
        precision = "bf16" if accelerator == "cuda" else "32"
    precision = {"bf16": "bf16-mixed", "32": "32-true"}[precision]
    chosen = (
        [device.index]
        if (accelerator == "cuda" and devices == 1 and device.index is not None)
        else devices
    )
    return Fabric(accelerator=accelerator, devices=chosen, strategy=strategy, precision=precision)
