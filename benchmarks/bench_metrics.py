"""A checkpoint's FID with cached reference features vs computing them every time.

Baseline: FID at one save interval when the real images' Inception features are
extracted again (what the thesis' per-interval FID did). Target: the same FID when
they come from cxrlab's reference cache, so only the generated images pass through
the network. The network is the real Inception-v3 architecture of torch-fidelity with
random weights written to a temporary file (so that nothing is downloaded; the time
per image is the same as with the published weights). Target: >= 2x.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from common import Timer, dev_dataset, workdir
from cxrlab.data.packed import preprocess_dataset
from cxrlab.metrics import compute_metrics
from cxrlab.metrics.extractors import get_extractor
from cxrlab.preprocess.transforms import PreprocessOptions

SIZE_PX, N_FAKE = 64, 64


def random_inception_weights(folder: Path) -> Path:
    """torch-fidelity's Inception-v3 with its initial random weights, saved as its weights file."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    from cxrlab.metrics.extractors.inception import INCEPTION_WEIGHTS

    real_loader, real_load = (
        tfi.load_state_dict_from_url,
        tfi.FeatureExtractorInceptionV3.load_state_dict,
    )
    tfi.load_state_dict_from_url = lambda *args, **kwargs: {}
    tfi.FeatureExtractorInceptionV3.load_state_dict = lambda *args, **kwargs: None
    try:
        state = tfi.FeatureExtractorInceptionV3("random", ["2048"]).state_dict()
    finally:
        tfi.load_state_dict_from_url = real_loader
        tfi.FeatureExtractorInceptionV3.load_state_dict = real_load
    path = folder / INCEPTION_WEIGHTS.filename
    torch.save(state, path)
    return path


def main() -> None:
    with workdir() as tmp:
        tmp = Path(tmp)
        dataset, what = dev_dataset(tmp)
        packed = tmp / "packed"
        preprocess_dataset(dataset, packed, PreprocessOptions(size_px=SIZE_PX), progress=False)
        extractor = get_extractor("inception", weights=random_inception_weights(tmp), device="cpu")
        fake = torch.rand(N_FAKE, 1, SIZE_PX, SIZE_PX, generator=torch.Generator().manual_seed(0))
        fake = fake * 2 - 1
        with tempfile.TemporaryDirectory() as cache:
            with Timer() as baseline:
                first = compute_metrics(packed, fake, "fid", extractor=extractor, cache_dir=cache)
            with Timer() as ours:
                second = compute_metrics(packed, fake, "fid", extractor=extractor, cache_dir=cache)
        assert not first.info["reference_cached"] and second.info["reference_cached"]
        assert abs(first["fid"] - second["fid"]) <= 1e-9 * max(1.0, first["fid"])
        n_real = first.info["n_real"]
        print(f"FID of {N_FAKE} generated vs {n_real} real images at {SIZE_PX} px, {what}, CPU")
        print(
            f"  baseline  real features extracted again at every interval: {baseline.seconds:7.2f} s"
        )
        print(f"  cxrlab    real features from the reference cache:          {ours.seconds:7.2f} s")
        print(f"  ratio     {baseline.seconds / ours.seconds:.1f}x faster (target >= 2x)")


if __name__ == "__main__":
    main()
