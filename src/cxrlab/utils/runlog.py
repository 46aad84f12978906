"""Pieces every trainer shares: the per-epoch CSV log and the RNG states of a checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from cxrlab.utils.fs import atomic_write_text


class EpochLog:
    """``epochs.csv`` with fixed ``columns``, rewritten atomically after each row.

    On resume, rows after the checkpoint's epoch (``keep_through``) are dropped, so a
    resumed run's file equals an uninterrupted one's.
    """

    def __init__(self, path: Path, columns: list[str], keep_through: int) -> None:
        self.path = path
        self.columns = list(columns)
        self.rows: list[dict] = []
        if path.is_file() and keep_through > 0:
            with open(path, newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= keep_through]
        self._write()

    def _write(self) -> None:
        lines = [",".join(self.columns)]
        lines += [",".join(str(row[c]) for c in self.columns) for row in self.rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def append(self, row: dict) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._write()


def capture_rng(device: torch.device) -> dict:
    """The global RNG states a checkpoint needs for a bitwise resume (CPU, and CUDA's)."""
    state = {"rng_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    """Restore what :func:`capture_rng` captured."""
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], device)
