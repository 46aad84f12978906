"""``cxrlab clf predict``: a trained classifier on new, unlabelled image files.

Each file goes through the same per-image function as ``cxrlab data preprocess``
(:func:`cxrlab.data.pack_worker.preprocess_one`) with the options the run's training
images were made with, so a new image reaches the model exactly as a training image
did. Every trained seed predicts it; ``preds.csv`` holds per file the mean COVID-19
probability over the seeds, the mean of the seeds' validation thresholds, the call,
and each seed's probability when there are several.

What cannot be predicted honestly is refused before any model runs: an unreadable
file (named, with the reason), a run whose training preprocessing is unknown, or one
that learned from lung-cropped or lung-masked images (a new image has no lung mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlab.errors import CxrlabError
from cxrlab.preprocess.transforms import PreprocessOptions

#: File suffixes taken from a folder (a file named on the command line is always tried).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
COLUMNS = ["path", "probability", "threshold", "prediction"]


@dataclass
class PredictFilesReport:
    out: Path
    n_images: int
    n_covid: int
    seeds: list[int]
    preprocessing: str
    gradcam: Path | None = None

    def summary(self) -> str:
        lines = [
            f"{self.out}: {self.n_images} images, {self.n_covid} called COVID-19 (mean "
            f"probability of {len(self.seeds)} seed(s) at the mean of their validation "
            f"thresholds); preprocessed as the run's training images ({self.preprocessing})"
        ]
        if self.gradcam is not None:
            lines.append(f"Grad-CAM of seed {self.seeds[0]}: {self.gradcam}")
        return "\n".join(lines)


def image_files(inputs: list[str | Path]) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders searched recursively
    for :data:`IMAGE_SUFFIXES`, in the order given (each folder's files sorted).

    Raises:
        CxrlabError: for a path that does not exist or a folder without images.
    """
    files: list[Path] = []
    for given in map(Path, inputs):
        if given.is_dir():
            found = sorted(
                p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise CxrlabError(
                    f"{given} holds no image files ({', '.join(IMAGE_SUFFIXES)}); give image "
                    "files or folders of them"
                )
            files += found
        elif given.is_file():
            files.append(given)
        else:
            raise CxrlabError(f"{given} does not exist; give image files or folders of them")
    if not files:
        raise CxrlabError("give at least one image file or folder to predict")
    return files


def run_preprocessing(run: str | Path) -> tuple[PreprocessOptions, str]:
    """How the images ``run`` learned from were preprocessed, as options for
    :func:`~cxrlab.data.pack_worker.preprocess_one`, and a short description.

    The training PACKED's own ``meta.json`` options are used when they still match the
    run's record (they include settings the record leaves out, such as JPEG draft
    decoding); otherwise the run's record.

    Raises:
        CxrlabError: when the run's preprocessing cannot be read, or needs lung masks.
    """
    import json

    import yaml

    from cxrlab.clf.data import trained_preprocessing
    from cxrlab.data.provenance import COMPARED_OPTIONS, preprocessing_differences

    run = Path(run)
    recorded, where = trained_preprocessing(run)
    if not recorded:
        raise CxrlabError(
            f"cannot tell how the training images of {run} were preprocessed (no "
            "'preprocessing' in its metrics.json, and its training PACKED cannot be read): "
            "preprocess the new images into a PACKED with the training options and use "
            "`cxrlab clf evaluate --split all`"
        )
    options = dict(recorded)
    try:
        data = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("data")
        meta = json.loads((Path(data) / "meta.json").read_text())
        packed_options = meta.get("options") if isinstance(meta, dict) else None
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        packed_options = None
    if isinstance(packed_options, dict):
        from cxrlab.data.provenance import preprocessing_of

        if not preprocessing_differences(recorded, preprocessing_of({"options": packed_options})):
            options = {**packed_options, **recorded}
    lungs = options.get("lungs", "none")
    if lungs != "none":
        raise CxrlabError(
            f"{run} learned from images preprocessed with --lungs {lungs} (recorded in {where}), "
            "which needs a lung mask per image; clf predict makes none. Import the images "
            "(`cxrlab data import folders`), predict their masks (`cxrlab seg predict`), "
            f"preprocess them with --lungs {lungs} --lung-masks MASKS and run "
            "`cxrlab clf evaluate RUN --data PACKED --split all`"
        )
    known = PreprocessOptions.__dataclass_fields__
    chosen = PreprocessOptions(**{k: v for k, v in options.items() if k in known})
    described = ", ".join(
        f"{words} {recorded[key]}" for key, words in COMPARED_OPTIONS.items() if key in recorded
    )
    return chosen, described


def preprocess_files(files: list[Path], options: PreprocessOptions, progress: bool) -> np.ndarray:
    """(N, S, S) pixels of ``files`` as ``data preprocess`` makes them with ``options``.

    Raises:
        CxrlabError: naming every file that cannot be read and why.
    """
    from cxrlab.data.pack_worker import preprocess_one
    from cxrlab.utils.progress import tqdm

    pixels, unreadable = [], []
    for path in tqdm(files, desc="preprocessing", unit="img", disable=not progress, leave=False):
        result = preprocess_one((str(path), options, None))
        if "image" in result:
            pixels.append(result["image"])
        else:
            unreadable.append(f"{path} ({result['reason']}: {result['detail']})")
    if unreadable:
        shown = "; ".join(unreadable[:3]) + (
            f"; and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        )
        raise CxrlabError(
            f"cannot read {len(unreadable)} of {len(files)} images: {shown}. Remove or convert "
            "them and run again"
        )
    return np.stack(pixels)


def predict_files(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    *,
    explain: int = 0,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
) -> PredictFilesReport:
    """Predict COVID-19 for image files with every trained seed of a ``clf train`` run.

    Args:
        run: a run folder of ``cxrlab clf train``.
        inputs: image files and folders (searched recursively).
        out: the CSV to write (``path, probability, threshold, prediction`` and
            ``probability_seed_N`` per seed when there are several).
        explain: Grad-CAM overlays of the first ``explain`` images (first seed), written
            beside ``out`` as ``<out stem>-gradcam.png``.
        device: ``auto``, ``cpu`` or ``cuda``.
        force: replace an existing ``out`` that is not such a CSV.
        progress: progress bars.

    Raises:
        CxrlabError: before any model runs, for a run without trained seeds, an unknown
            or lung-dependent preprocessing, a missing or unreadable image, a bad ``out``.
    """
    import torch

    from cxrlab.clf.data import ImagePart, ImageSet
    from cxrlab.clf.evaluate import seed_folders
    from cxrlab.clf.predict import load_trained, predict
    from cxrlab.utils.device import resolve_device
    from cxrlab.utils.fs import atomic_write_text
    from cxrlab.utils.outputs import check_output_file, starts_with

    run, out = Path(run), Path(out)
    folders = seed_folders(run)
    if not folders:
        raise CxrlabError(
            f"{run} holds no trained seed (seed_N/best.pt): give a run folder of "
            "`cxrlab clf train` that finished"
        )
    if explain < 0:
        raise CxrlabError(f"--explain must be 0 or more images, got {explain}")
    options, described = run_preprocessing(run)
    files = image_files(inputs)
    check_output_file(
        out,
        what="a predictions CSV",
        is_kind=starts_with(",".join(COLUMNS[:2]).encode()),
        inputs=[run, *inputs],
        force=force,
    )
    gradcam_path = out.with_name(f"{out.stem}-gradcam.png") if explain else None
    if gradcam_path is not None:
        check_output_file(
            gradcam_path,
            what="a PNG image",
            is_kind=starts_with(b"\x89PNG"),
            inputs=[run, *inputs],
            force=force,
        )
    pixels = preprocess_files(files, options, progress)
    torch_device = resolve_device(device)
    frame = pd.DataFrame({"path": [str(p) for p in files]})
    probabilities, thresholds, seeds, gradcam = [], [], list(folders), None
    for seed, folder in folders.items():
        model, state = load_trained(folder, torch_device)
        size_px = int(state["spec"]["size_px"])
        if size_px != options.size_px:
            raise CxrlabError(
                f"{folder} was trained on {size_px} px images but the run records a "
                f"preprocessing of {options.size_px} px ({described}): the run folder is "
                "inconsistent; evaluate a PACKED instead (`cxrlab clf evaluate`)"
            )
        table = pd.DataFrame(
            {
                "id": frame["path"],
                "patient_id": frame["path"],
                "source": "files",
                "split": "",
                "covid": 0,
                "origin": "real",
                "part": 0,
                "row": np.arange(len(files)),
            }
        )  # fmt: skip  (covid is unknown: predict's loss is ignored)
        images = ImageSet([ImagePart(pixels, np.arange(len(files)))], table, size_px)
        probability, _ = predict(
            model, images, device=torch_device, progress=progress, desc=f"seed {seed}"
        )
        probabilities.append(probability)
        thresholds.append(float(state["threshold"]))
        if gradcam_path is not None and gradcam is None:
            gradcam = _gradcam(model, images, probability, thresholds[-1], explain, gradcam_path,
                               torch_device)  # fmt: skip
        del model
        if torch_device.type == "cuda":
            torch.cuda.empty_cache()
    frame["probability"] = np.mean(probabilities, axis=0).round(6)
    frame["threshold"] = round(float(np.mean(thresholds)), 6)
    frame["prediction"] = np.where(frame["probability"] >= frame["threshold"], "covid", "other")
    if len(seeds) > 1:
        for seed, probability in zip(seeds, probabilities, strict=True):
            frame[f"probability_seed_{seed}"] = probability.round(6)
    atomic_write_text(out, frame.to_csv(index=False))
    return PredictFilesReport(
        out, len(frame), int((frame["prediction"] == "covid").sum()), seeds, described, gradcam
    )


def _gradcam(model, images, probability, threshold, n, path, device) -> Path:
    """Grad-CAM overlays of the first ``n`` images into ``path``."""
    import torch

    from cxrlab.clf.explain import GradCam, overlay_grid

    shown = np.arange(min(n, len(images)))
    batch = images.batch(shown).to(device)
    cams, _ = GradCam(model)(batch)
    captions = [
        f"{Path(images.table['id'][i]).name[:22]} p={probability[i]:.2f} -> "
        f"{'COVID' if probability[i] >= threshold else 'other'}"
        for i in shown
    ]
    with torch.no_grad():
        pixels = batch[:, 0].float().cpu().numpy()
    return overlay_grid(pixels, cams.cpu().numpy(), captions, path)
