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


def make_fabric(device_name: str = "auto", devices: int = 1):
    """The Lightning Fabric both trainers run on: ``devices`` data-parallel processes on
    the device type of ``device_name`` (DDP on CUDA, spawned DDP with gloo on CPU), bf16
    mixed precision on CUDA and float32 on CPU.

    Raises:
        CxrlabError: if CUDA is asked for but not available, or ``devices`` < 1.
    """
    from lightning_fabric import Fabric

    if devices < 1:
        raise CxrlabError(f"--devices must be at least 1, got {devices}")
    device = resolve_device(device_name)
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    if devices > 1:
        strategy = "ddp" if accelerator == "cuda" else "ddp_spawn"
    else:
        strategy = "auto"
    precision = "bf16-mixed" if accelerator == "cuda" else "32-true"
    chosen = (
        [device.index]
        if (accelerator == "cuda" and devices == 1 and device.index is not None)
        else devices
    )
    return Fabric(accelerator=accelerator, devices=chosen, strategy=strategy, precision=precision)
