"""Scale: the data path as whole commands on a synthetic COVIDx-sized source tree.

Writes N synthetic chest-X-ray-like images (default 30,000) like the public
collections mix them: 1024-2048 px JPEG (8-bit) and PNG (8- and 16-bit), some
12-bit DICOM, in ``ROOT/<class>/`` folders, with a COVIDx label file (patient ids,
several images per patient, a source per row) as the metadata. Each image has its own
content (a random low-frequency field, two lung-like ellipses, grain), so neither the
exact nor the perceptual-hash duplicate checks fold them together.

Then runs, each as the command a user types (a fresh ``cxrlab`` process, so its peak
resident memory is its own, from ``wait4``): ``data import covidx`` (and ``data import
folders`` with ``--folders``), ``data split``, ``data preprocess --size 224``, ``data
stats``, one ``clf train`` epoch with a trained backbone (simple-cnn) and with a frozen
one (resnet18, ``--pretrained none``: no download), and one ``gen train`` save
interval (the MLP gan, 50 steps). The classifier and generator read a PACKED made at
64 px from the same split dataset: a 224 px epoch over 21,000 training images would take the better part of an
hour on 2 cores, and the data path (one memory map, read a batch at a time) is the
same at every size.

Baseline: the same commands on N/10 images (``--baseline-n``, default 3,000). Printed per
command: wall seconds, CPU seconds, peak RSS; then for each the time ratio against
the 10x of the data (1.0 = linear) and the growth of peak memory.
Targets (issue 25, on this 2-core machine under its shared load): import + preprocess of
30,000 images at 224 px in at most 10 minutes together (each run also prints the time
on idle cores that its CPU seconds imply for 30,000); peak RSS of every command at most
2 GiB; the classifier epoch and generator interval grow in memory by less than 20%.

``python benchmarks/bench_scale.py [--n 30000] [--baseline-n 3000] [--root DIR] [--keep]
[--resume] [--single] [--folders] [--json FILE]`` (``make bench BENCH=scale SCALE_N=3000``
for a quicker run). The source trees and outputs go under
``--root`` (default: a temporary folder) and are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: Targets of issue 25.
IMPORT_PREPROCESS_LIMIT_S = 600.0
RSS_LIMIT_BYTES = 2 * 1024**3
GROWTH_LIMIT = 0.20

#: Share of each kind of file (the rest are 8-bit JPEGs), like the public collections:
#: COVIDx/QU-Ex mostly PNG and JPEG, RSNA's as DICOM, some 16-bit PNGs.
PNG8_SHARE, PNG16_SHARE, DICOM_SHARE = 0.33, 0.07, 0.05
#: Share of COVID-positive images, and images per patient (1 to this many).
POSITIVE_SHARE, MAX_PER_PATIENT = 0.25, 3
SITES = ("site_a", "site_b", "site_c", "site_d", "site_e")
CLF_GEN_SIZE = 64
#: One save interval of the generator: its memory, not its speed, is the measure here
#: (bench_gen.py times the families), so the light MLP gan.
GEN_STEPS = 50


# ----------------------------------------------------------------- the source tree
def _kind(index: int) -> str:
    """The file kind of image ``index``: spread evenly through the tree."""
    fraction = (index * 0.6180339887) % 1.0  # golden-ratio sequence: every share everywhere
    if fraction < DICOM_SHARE:
        return "dcm"
    if fraction < DICOM_SHARE + PNG16_SHARE:
        return "png16"
    if fraction < DICOM_SHARE + PNG16_SHARE + PNG8_SHARE:
        return "png8"
    return "jpg"


def _picture(rng: np.random.Generator, height: int, width: int, top: int) -> np.ndarray:
    """(H, W) picture scaled to 0..``top`` (255: uint8, else uint16): a random smooth
    field with two dark 'lungs', drawn at 1/8 scale and enlarged, plus grain."""
    import cv2

    small_h, small_w = height // 8, width // 8
    field = cv2.resize(
        rng.random((6, 6), dtype=np.float32), (small_w, small_h), interpolation=cv2.INTER_CUBIC
    )
    picture = 0.35 + 0.4 * field
    for side in (0.3, 0.7):
        centre = (int(small_w * (side + rng.uniform(-0.05, 0.05))), small_h // 2)
        axes = (int(small_w * rng.uniform(0.12, 0.18)), int(small_h * rng.uniform(0.25, 0.35)))
        mask = np.zeros((small_h, small_w), np.float32)
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 0.2, -1)
        picture -= mask
    dtype = np.uint8 if top == 255 else np.uint16
    small = np.round(np.clip(picture, 0.0, 0.98) * top).astype(dtype)
    large = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    # grain: one random tile repeated (fresh noise for every pixel would cost more
    # than the rest); a few grey levels, as a real film's noise
    tile = rng.integers(0, 3, (256, 256)).astype(dtype) * max(1, top // 255)
    reps = (height // 256 + 1, width // 256 + 1)
    return cv2.add(large, np.tile(tile, reps)[:height, :width])


def _write_dicom(path: Path, values: np.ndarray, patient: str) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    dataset.PatientID = patient
    dataset.Rows, dataset.Columns = values.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    dataset.PixelData = values.tobytes()
    dataset.save_as(path, enforce_file_format=True)


def _write_one(job: tuple[Path, str, int, int, str]) -> int:
    """Write one image; returns its size in bytes."""
    import cv2

    path, kind, seed, index, patient = job
    cv2.setNumThreads(1)  # the pool's processes are the parallelism
    rng = np.random.default_rng([seed, index])
    side = int(rng.integers(1024, 2049))
    aspect = rng.uniform(0.8, 1.25)
    if kind == "dcm":  # RSNA's DICOMs are smaller: 1024-1536 px
        side = int(rng.integers(1024, 1537))
    height, width = side, max(256, int(side * aspect))
    if kind == "dcm":
        _write_dicom(path, _picture(rng, height, width, 4095), patient)
    elif kind == "png16":
        cv2.imwrite(
            str(path), _picture(rng, height, width, 65535), [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
    elif kind == "png8":
        cv2.imwrite(str(path), _picture(rng, height, width, 255), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        cv2.imwrite(str(path), _picture(rng, height, width, 255), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path.stat().st_size


def write_source(root: Path, n: int, *, seed: int = 0, workers: int = 2) -> dict:
    """Write N images under ``root/<COVID|Normal>/`` and ``root/labels.txt`` (COVIDx
    format: ``patient file label source``). Returns counts, bytes and seconds.

    A tree already written with the same N and seed (``written.json``) is reused.
    """
    marker = root / "written.json"
    if marker.is_file():
        written = json.loads(marker.read_text())
        if written.get("n") == n and written.get("seed") == seed:
            return written
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    jobs, lines = [], []
    index, patient_number = 0, 0
    counts: dict[str, int] = {}
    while index < n:
        patient_number += 1
        positive = rng.random() < POSITIVE_SHARE
        folder, label = ("COVID", "positive") if positive else ("Normal", "negative")
        site = SITES[int(rng.integers(len(SITES)))]
        patient = f"P{patient_number:06d}"
        for image in range(int(rng.integers(1, MAX_PER_PATIENT + 1))):
            if index >= n:
                break
            kind = _kind(index)
            counts[kind] = counts.get(kind, 0) + 1
            suffix = {"dcm": ".dcm", "png16": ".png", "png8": ".png", "jpg": ".jpg"}[kind]
            name = f"{folder}/{patient}_{image}{suffix}"
            jobs.append((root / name, kind, seed, index, patient))
            lines.append(f"{patient} {name} {label} {site}")
            index += 1
    for folder in ("COVID", "Normal"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    with ProcessPoolExecutor(max_workers=workers) as pool:
        total = sum(pool.map(_write_one, jobs, chunksize=64))
    written = {
        "n": n,
        "seed": seed,
        "patients": patient_number,
        "kinds": counts,
        "bytes": total,
        "seconds": time.perf_counter() - start,
    }
    marker.write_text(json.dumps(written) + "\n")
    return written


# ----------------------------------------------------------------- measuring commands
@dataclass
class Measured:
    name: str
    wall_s: float
    cpu_s: float
    peak_rss: int  # bytes

    def row(self) -> str:
        return (
            f"  {self.name:<34} {self.wall_s:8.1f} s wall {self.cpu_s:8.1f} s CPU "
            f"{self.peak_rss / 1024**2:8.0f} MiB peak RSS"
        )


def run_command(name: str, args: list[str], log: Path) -> Measured:
    """Run ``cxrlab ARGS`` in a fresh process; its wall time, CPU time and peak RSS
    (``ru_maxrss`` of it and the children it waited for, from ``wait4``)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    command = [sys.executable, "-m", "cxrlab", *args]
    start = time.perf_counter()
    with open(log, "a") as handle:
        handle.write(f"$ cxrlab {' '.join(args)}\n")
        handle.flush()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{name} failed (exit {process.returncode}): see {log}")
    return Measured(name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def run_pipeline(
    source: Path, work: Path, n: int, *, folders: bool, seed: int = 0, resume: bool = False
) -> tuple[dict, list[Measured]]:
    """Write the source tree of ``n`` images in ``source`` and run every command on it,
    writing under ``work``."""
    written = write_source(source, n, seed=seed)
    print(
        f"N={n}: wrote {n} images of {written['patients']} patients "
        f"({', '.join(f'{k} {v}' for k, v in sorted(written['kinds'].items()))}), "
        f"{written['bytes'] / 1024**3:.1f} GiB in {written['seconds']:.0f} s",
        flush=True,
    )
    log = work / "commands.log"
    dataset, packed, small = work / "dataset", work / "packed224", work / "packed64"
    steps = [
        (
            "data import covidx",
            ["data", "import", "covidx", str(source / "labels.txt"), "--out", str(dataset), "-q"],
        ),
    ]
    if folders:
        steps.append(
            (
                "data import folders",
                [
                    "data",
                    "import",
                    "folders",
                    str(source),
                    "--out",
                    str(work / "dataset-folders"),
                    "--patient-regex",
                    r"^(P\d+)_",
                    "-q",
                ],
            )
        )
    steps += [
        (
            "data split",
            ["data", "split", str(dataset), "--by", "patient", "--ratios", "0.7", "0.15", "0.15"],
        ),
        (
            "data preprocess --size 224",
            ["data", "preprocess", str(dataset), "--size", "224", "--out", str(packed), "-q"],
        ),
        ("data stats", ["data", "stats", str(dataset), "--out", str(work / "stats"), "-q"]),
        (
            f"data preprocess --size {CLF_GEN_SIZE}",
            [
                "data",
                "preprocess",
                str(dataset),
                "--size",
                str(CLF_GEN_SIZE),
                "--out",
                str(small),
                "-q",
            ],
        ),
        (
            "clf train simple-cnn, 1 epoch",
            [
                "clf",
                "train",
                "--data",
                str(small),
                "--out",
                str(work / "clf-cnn"),
                "--arch",
                "simple-cnn",
                "--pretrained",
                "none",
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "-q",
            ],
        ),
        (
            "clf train resnet18 frozen, 1 epoch",
            [
                "clf",
                "train",
                "--data",
                str(small),
                "--out",
                str(work / "clf-frozen"),
                "--arch",
                "resnet18",
                "--pretrained",
                "none",
                "--freeze-backbone",
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "-q",
            ],
        ),
        (
            f"gen train gan, 1 interval ({GEN_STEPS} steps)",
            [
                "gen",
                "train",
                "--model",
                "gan",
                "--data",
                str(small),
                "--size",
                str(CLF_GEN_SIZE),
                "--out",
                str(work / "gen"),
                "--steps",
                str(GEN_STEPS),
                "--save-interval",
                str(GEN_STEPS),
                "--sample-interval",
                str(GEN_STEPS),
                "--no-metrics",
                "-q",
            ],
        ),
    ]
    measured = []
    done_file = work / "measured.json"
    done = json.loads(done_file.read_text()) if resume and done_file.is_file() else {}
    for name, args in steps:
        if name in done:  # --resume: measured by an earlier run of this bench
            result = Measured(**done[name])
        else:
            out = Path(args[args.index("--out") + 1]) if "--out" in args else None
            if out is not None and out.exists():  # left by an interrupted run
                shutil.rmtree(out)
            result = run_command(name, args, log)
            done[name] = result.__dict__
            done_file.write_text(json.dumps(done, indent=2) + "\n")
        print(result.row(), flush=True)
        measured.append(result)
    by_name = {m.name: m for m in measured}
    wall = by_name["data import covidx"].wall_s + by_name["data preprocess --size 224"].wall_s
    cpu = by_name["data import covidx"].cpu_s + by_name["data preprocess --size 224"].cpu_s
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"  import + preprocess 224 px: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU; "
        f"30,000 images on {cores} idle cores would take about "
        f"{cpu * 30_000 / n / cores / 60:.1f} min (CPU time / cores, scaled linearly)",
        flush=True,
    )
    return written, measured


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def report(n: int, base_n: int, ours: list[Measured], base: list[Measured]) -> list[str]:
    """The side-by-side table and the verdict on each target; returns the misses."""
    factor = n / base_n
    print(f"\nscale: N={n} vs baseline N={base_n} ({factor:g}x the data)")
    print(
        f"  {'command':<34} {'time':>9} {'CPU':>9} {'peak RSS':>10} {'time ratio':>11} "
        f"{'vs data':>8} {'RSS growth':>11}"
    )
    misses = []
    by_name = {m.name: m for m in base}
    for m in ours:
        b = by_name[m.name]
        ratio = m.wall_s / b.wall_s if b.wall_s > 0 else float("nan")
        growth = m.peak_rss / b.peak_rss - 1.0
        print(
            f"  {m.name:<34} {m.wall_s:8.1f}s {m.cpu_s:8.1f}s {m.peak_rss / 1024**2:7.0f} MiB "
            f"{ratio:10.1f}x {ratio / factor:7.2f} {growth:+10.0%}"
        )
        if m.peak_rss > RSS_LIMIT_BYTES:
            misses.append(f"{m.name}: peak RSS {m.peak_rss / 1024**3:.2f} GiB > 2 GiB")
        if m.name.startswith(("clf train", "gen train")) and growth >= GROWTH_LIMIT:
            misses.append(f"{m.name}: memory grows {growth:+.0%} (target < +20%)")
    imported = next(m for m in ours if m.name == "data import covidx")
    preprocessed = next(m for m in ours if m.name == "data preprocess --size 224")
    together = imported.wall_s + preprocessed.wall_s
    print(
        f"  import + preprocess 224 px of {n} images: {together / 60:.1f} min "
        f"(target <= {IMPORT_PREPROCESS_LIMIT_S / 60:.0f} min for 30,000)"
    )
    if n >= 30_000 and together > IMPORT_PREPROCESS_LIMIT_S * n / 30_000:
        misses.append(f"import + preprocess {together / 60:.1f} min > 10 min")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("SCALE_N", 30_000)))
    parser.add_argument("--baseline-n", type=int, default=None, help="default: N/10")
    parser.add_argument("--root", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--folders", action="store_true", help="also time `data import folders`")
    parser.add_argument("--keep", action="store_true", help="keep the trees and outputs")
    parser.add_argument(
        "--write-only", action="store_true", help="only write the source trees (into --root)"
    )
    parser.add_argument("--single", action="store_true", help="run N only, no comparison")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --root and --keep: reuse the figures of commands an earlier run finished",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    options = parser.parse_args()
    base_n = options.baseline_n or max(100, options.n // 10)
    root = options.root or Path(tempfile.mkdtemp(prefix="cxrlab-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"load average before (1, 5, 15 min): {_load()} on {os.cpu_count()} cores", flush=True)
    if options.write_only:
        for n in (base_n, options.n):
            written = write_source(root / f"source-{n}", n)
            print(f"N={n}: {written}")
        return 0
    results = {}
    sizes = (options.n,) if options.single else (base_n, options.n)
    try:
        for n in sizes:
            work = root / f"n{n}"
            if not options.resume:
                shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True, exist_ok=True)
            source = root / f"source-{n}"
            written, measured = run_pipeline(
                source, work, n, folders=options.folders, resume=options.resume
            )
            results[n] = (written, measured)
            if not options.keep:
                shutil.rmtree(source, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average after (1, 5, 15 min): {_load()}")
    misses = (
        []
        if options.single
        else report(options.n, base_n, results[options.n][1], results[base_n][1])
    )
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    str(n): {
                        "written": written,
                        "commands": [m.__dict__ for m in measured],
                    }
                    for n, (written, measured) in results.items()
                },
                indent=2,
            )
            + "\n"
        )
    for miss in misses:
        print(f"  MISSED: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
