import pytest
import torch

from cxrlab.errors import CxrlabError
from cxrlab.utils.checkpoint import load_checkpoint, save_checkpoint
from cxrlab.utils.device import resolve_device
from cxrlab.utils.fs import atomic_dir, atomic_write_text


def test_checkpoint_round_trip_with_rng_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    state = {
        "step": 7,
        "model": model.state_dict(),
        "rng": torch.get_rng_state(),
        "config": {"a": [1, 2]},
    }
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 7 and loaded["config"] == {"a": [1, 2]} and loaded["version"] == 1
    assert torch.equal(loaded["model"]["weight"], model.weight.detach())
    assert torch.equal(loaded["rng"], state["rng"])


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CxrlabError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CxrlabError, match="cannot load"):
        load_checkpoint(tmp_path / "bad.pt")


def test_atomic_writes_leave_old_content_on_failure(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as staging:
        (staging / "x").write_text("partial")
        raise RuntimeError
    assert not (tmp_path / "d").exists()
    assert (tmp_path / "f.txt").read_text() == "old"


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(CxrlabError, match="CUDA is not available"):
            resolve_device("cuda")


def test_atomic_writes_get_the_permissions_a_plain_write_gets(tmp_path):
    atomic_write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = (tmp_path / "atomic.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert mode & 0o044  # readable by others under the usual umask, not mkstemp's 0600
