"""utils.allocator: freed large buffers are reused instead of unmapped and faulted in
again (the kernel time of every training step)."""

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
from cxrlab.utils.allocator import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
buffer = bytearray(48 * 2**20); del buffer  # above glibc's largest dynamic threshold
before = faults()
for _ in range(20):
    buffer = bytearray(48 * 2**20)  # zero-filled: every page is touched
    del buffer
print(applied, faults() - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_reuses_freed_buffers():
    applied, tuned = _faults("tuned")
    _, default = _faults("default")
    assert applied == "True"
    pages = 48 * 2**20 // 4096
    assert default > 10 * pages  # each round maps fresh pages and faults them in
    assert tuned < pages  # the freed buffer is reused: at most the first round's pages


def test_user_settings_win(monkeypatch):
    from cxrlab.utils.allocator import tune_allocator

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert tune_allocator() is False
