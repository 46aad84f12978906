import io
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from metric_factory import TinyInception, TinyXrv

from cxrlab.errors import CxrlabError
from cxrlab.metrics.extractors import MissingWeightsError, get_extractor, locate_weights
from cxrlab.metrics.extractors.inception import INCEPTION_URL, INCEPTION_WEIGHTS
from cxrlab.metrics.extractors.xrv import xrv_weights_file

NAME = INCEPTION_WEIGHTS.filename


def test_weights_found_as_file_folder_alias_env_and_library_cache(
    tmp_path, monkeypatch, offline_machine
):
    given = tmp_path / "anything.pth"
    given.write_bytes(b"w")
    assert locate_weights(INCEPTION_WEIGHTS, given) == given
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"w")  # pytorch-fid's name
    assert locate_weights(INCEPTION_WEIGHTS, folder).name.startswith("pt_inception")
    monkeypatch.setenv("CXRLAB_WEIGHTS_DIR", str(folder))
    assert locate_weights(INCEPTION_WEIGHTS).parent == folder
    monkeypatch.delenv("CXRLAB_WEIGHTS_DIR")
    # where torch-fidelity (through torch.hub) caches it: $TORCH_HOME/hub/checkpoints
    cached = offline_machine / "torch" / "hub" / "checkpoints" / NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"w")
    assert locate_weights(INCEPTION_WEIGHTS) == cached


def test_missing_weights_offline_name_the_file_url_and_offline_metrics():
    with pytest.raises(MissingWeightsError) as caught:
        locate_weights(INCEPTION_WEIGHTS)
    message = str(caught.value)
    assert NAME in message and INCEPTION_URL in message
    assert "$CXRLAB_OFFLINE" in message and "--weights" in message
    assert "swd, diversity, memorization" in message


def test_given_weights_path_that_does_not_exist_never_downloads(tmp_path):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        locate_weights(INCEPTION_WEIGHTS, tmp_path / "typo.pth", download=True)
    with pytest.raises(MissingWeightsError, match="holds none of"):
        locate_weights(INCEPTION_WEIGHTS, tmp_path, download=True)


def test_failed_download_names_the_reason_and_leaves_no_file(monkeypatch, offline_machine):
    monkeypatch.delenv("CXRLAB_OFFLINE")

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(MissingWeightsError, match="download from .* failed .Name or service"):
        locate_weights(INCEPTION_WEIGHTS)
    assert not (offline_machine / "torch" / "hub" / "checkpoints" / NAME).exists()


def test_download_lands_in_the_library_cache(monkeypatch, offline_machine):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"weights"))
    path = locate_weights(INCEPTION_WEIGHTS, download=True)
    assert path == offline_machine / "torch" / "hub" / "checkpoints" / NAME
    assert path.read_bytes() == b"weights"


def test_xrv_weights_file_is_torchxrayvisions(offline_machine):
    spec = xrv_weights_file()
    assert spec.filename.endswith(".pt") and spec.url.endswith(spec.filename)
    assert spec.library_cache() == offline_machine / ".torchxrayvision" / "models_data"
    with pytest.raises(MissingWeightsError, match=spec.filename):
        get_extractor("xrv", device="cpu")


def test_input_rules():
    images = torch.tensor([0.0, 0.5, 1.0, 0.2]).view(1, 1, 2, 2)
    inception = get_extractor("inception", network=TinyInception(), device="cpu")
    prepared = inception.prepare(images)
    assert prepared.dtype == torch.uint8 and prepared.shape == (1, 3, 2, 2)
    assert prepared[0, :, 0, 1].tolist() == [128, 128, 128]  # round(127.5), all channels equal
    xrv = get_extractor("xrv", network=TinyXrv(), device="cpu")
    prepared = xrv.prepare(torch.ones(2, 1, 64, 64))
    assert prepared.shape == (2, 1, 224, 224)
    torch.testing.assert_close(prepared, torch.full_like(prepared, 1024.0))
    assert xrv.prepare(torch.zeros(1, 1, 300, 300)).min() == -1024.0


def test_identity_follows_the_weights():
    first = get_extractor("inception", network=TinyInception(seed=0), device="cpu")
    again = get_extractor("inception", network=TinyInception(seed=0), device="cpu")
    other = get_extractor("inception", network=TinyInception(seed=1), device="cpu")
    assert first.identity == again.identity != other.identity
    with pytest.raises(CxrlabError, match="unknown feature extractor"):
        get_extractor("vgg")


@pytest.mark.slow
def test_torch_fidelity_inception_loads_a_local_weights_file(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with monkeypatch.context() as patch:  # a randomly initialised network, never downloaded
        patch.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None)
        state = tfi.FeatureExtractorInceptionV3("random", ["2048"]).state_dict()
    torch.save(state, tmp_path / NAME)
    extractor = get_extractor("inception", weights=tmp_path, device="cpu")
    features = extractor.extract([torch.rand(2, 1, 32, 32)])
    assert features.features.shape == (2, 2048) and features.logits.shape == (2, 1008)
    assert np.isfinite(features.features).all()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CxrlabError, match="cannot load .*broken"):
        get_extractor("inception", weights=tmp_path / "broken", device="cpu")


@pytest.mark.slow
def test_torchxrayvision_densenet_loads_a_local_weights_file(tmp_path):
    import torchxrayvision as xrv

    spec = xrv_weights_file()
    torch.save(xrv.models.DenseNet(weights=None), tmp_path / spec.filename)  # published as a pickle
    extractor = get_extractor("xrv", weights=tmp_path / spec.filename, device="cpu")
    features = extractor.extract([torch.rand(2, 1, 64, 64)])
    assert features.features.shape == (2, 1024) and features.logits is None
