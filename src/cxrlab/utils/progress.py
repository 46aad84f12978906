"""The progress bar every long job shows: tqdm on a terminal, plain lines in a log file.

Redirected to a file (``cxrlab study run ... > log.txt``, a batch job), a tqdm bar
would fill it with carriage-return updates. There the same bar prints its state as an
ordinary line at most every :data:`LOG_INTERVAL_S` seconds, and once more when it
ends.
"""

from __future__ import annotations

import sys
import time

from tqdm.std import tqdm as _tqdm

#: Seconds between two lines of a bar written to a file.
LOG_INTERVAL_S = 30.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


class tqdm(_tqdm):  # noqa: N801 - a drop-in for tqdm's own name
    """``tqdm`` that writes plain periodic lines when its stream is not a terminal."""

    def __init__(self, *args, **kwargs) -> None:
        stream = kwargs.get("file") or sys.stderr
        self._as_lines = not _is_terminal(stream)
        self._printed_n: float | None = None
        self._printed_at = 0.0
        every = kwargs.get("mininterval")
        self._every = LOG_INTERVAL_S if every is None else float(every)
        if self._as_lines:
            kwargs.setdefault("mininterval", LOG_INTERVAL_S)
            kwargs["dynamic_ncols"] = False
            kwargs["leave"] = False  # closing then "clears" the bar: see display
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self._as_lines:
            return super().display(msg, pos)
        now = time.monotonic()
        closing = msg == ""
        if self._printed_n == self.n or (
            not closing and self._printed_n is not None and now - self._printed_at < self._every
        ):  # forced refreshes (set_postfix) too print at most once per interval
            return False
        # msg "" is tqdm clearing a bar it closes: a log keeps the final state instead
        text = (self.__str__() if not msg else msg).strip()
        if text:
            self.fp.write(text + "\n")
            self.fp.flush()
            self._printed_n, self._printed_at = self.n, now
        return False  # nothing for tqdm to clear with a carriage return
