"""Pieces every trainer shares: the run's CSV log and the RNG states of a checkpoint."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from cxrlab.utils.fs import atomic_write_text


class RunLog:
    """A run's CSV log: one row per epoch (classifiers, lungs) or per log interval
    (generators), keyed by the column ``key``.

    Rows are appended as they come. A row with a column the header lacks (a generator's
    metrics return several values, e.g. ``swd_64px``) widens the header: the file is then
    rewritten whole, atomically, which happens rarely. On resume, rows after the
    checkpoint's ``keep_through`` are dropped (and a row cut short by a crash with
    them), so a resumed run's file equals an uninterrupted one's.
    """

    def __init__(self, path: Path, columns: list[str], *, keep_through: int, key: str) -> None:
        self.path = Path(path)
        self.key = key
        self.columns = list(columns)
        self.rows: list[dict] = []
        if self.path.is_file() and keep_through > 0:
            text = self.path.read_text()
            text = text[: text.rfind("\n") + 1]  # a last line without its end was cut short
            reader = csv.DictReader(io.StringIO(text, newline=""))
            self.columns += [c for c in reader.fieldnames or [] if c not in self.columns]
            self.rows = [r for r in reader if _index(r.get(key)) <= keep_through]
        self._rewrite()

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())

    def append(self, row: dict) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore").writerow(row)


def _index(value) -> float:
    """A row's step or epoch; infinity for a row a crash cut short (it is dropped)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


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


def open_tensorboard(folder: Path):
    """A TensorBoard ``SummaryWriter`` logging into ``folder``, or None when the
    tensorboard package is missing (it is a dependency; trainers stay usable without)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder))
