"""Build the bundled sample from a local copy of the ieee8023 covid-chestxray-dataset.

Keeps only frontal X-rays whose licence allows redistribution (CC BY, CC BY-SA,
CC BY-NC-SA, Apache 2.0; never ND or unknown), converts them with cxrlab's own
reader to greyscale PNG with the longer side at 128 px, and writes a
``metadata.csv`` in the collection's own format (so the ieee8023 importer reads
it) with each image's url, doi and licence, plus ``LICENSES.md``.

    python scripts/make_sample.py --source ../shared/data/ieee8023-2020-06 \
        --out src/cxrlab/assets/sample
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from cxrlab.data.io import read_image
from cxrlab.data.sources.ieee8023 import DEFAULT_VIEWS
from cxrlab.data.sources.labels import harmonise

REDISTRIBUTABLE = re.compile(r"^(CC BY|CC BY-SA|CC BY-NC-SA)( \d\.\d)?$|^Apache 2\.0$")
COLUMNS = [
    "patientid", "offset", "sex", "age", "finding", "view", "modality",
    "folder", "filename", "doi", "url", "license", "source_filename",
]  # fmt: skip


def select_rows(metadata: pd.DataFrame, root: Path, n_images: int, seed: int) -> pd.DataFrame:
    """All redistributable non-COVID frontal X-rays, filled up with COVID ones to ``n_images``."""
    rows = metadata[
        (metadata["modality"] == "X-ray")
        & metadata["view"].isin(DEFAULT_VIEWS)
        & metadata["license"].str.strip().str.match(REDISTRIBUTABLE)
        & metadata["finding"].map(lambda f: harmonise(f) is not None)
    ]
    rows = rows[
        [(root / f / n).is_file() for f, n in zip(rows["folder"], rows["filename"], strict=True)]
    ]
    rows = rows.drop_duplicates("filename")
    covid = rows["finding"].map(lambda f: harmonise(f)[1])
    negatives = rows[covid == 0]
    positives = rows[covid == 1]
    take = max(0, n_images - len(negatives))
    order = np.random.default_rng(seed).permutation(len(positives))[:take]
    return pd.concat([negatives, positives.iloc[sorted(order)]]).sort_values("filename")


def shrink(pixels: np.ndarray, longer_side: int) -> np.ndarray:
    height, width = pixels.shape
    scale = longer_side / max(height, width)
    if scale >= 1:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, required=True, help="covid-chestxray-dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="sample folder to (re)write")
    parser.add_argument("--n", type=int, default=150, help="number of images")
    parser.add_argument("--size", type=int, default=128, help="longer side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    metadata = pd.read_csv(args.source / "metadata.csv", dtype=str, keep_default_na=False)
    chosen = select_rows(metadata, args.source, args.n, args.seed)
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "images").mkdir(parents=True)
    records = []
    for record in chosen.to_dict("records"):
        pixels = read_image(args.source / record["folder"] / record["filename"]).pixels
        if pixels.dtype == np.uint16:
            pixels = (pixels >> 8).astype(np.uint8)
        name = Path(record["filename"]).stem + ".png"
        Image.fromarray(shrink(pixels, args.size)).save(args.out / "images" / name, optimize=True)
        records.append(
            {**record, "folder": "images", "filename": name, "source_filename": record["filename"]}
        )
    table = pd.DataFrame(records)[COLUMNS]
    table.to_csv(args.out / "metadata.csv", index=False, lineterminator="\n")
    licences = table["license"].value_counts()
    covid = table["finding"].map(lambda f: harmonise(f)[1])
    lines = [
        "# Licences of the bundled sample",
        "",
        f"{len(table)} chest X-rays ({int(covid.sum())} COVID-19, {int((covid == 0).sum())} other findings)",
        "from the COVID-19 image data collection (Cohen, Morrison, Dao 2020,",
        "https://github.com/ieee8023/covid-chestxray-dataset, arXiv:2003.11597), as of June 2020,",
        f"converted to greyscale PNG with the longer side at {args.size} px by scripts/make_sample.py.",
        "",
        "Each image keeps its own licence, given per image in metadata.csv with the url and doi",
        "of the publication it comes from. Counts:",
        "",
    ]
    lines += [f"- {name}: {count}" for name, count in licences.items()]
    lines += [
        "",
        "CC BY-NC-SA images may be used for non-commercial purposes only; derivatives must be",
        "shared under the same licence and credit the source given in metadata.csv.",
        "The metadata is from the collection's metadata.csv (CC BY-NC-SA 4.0).",
        "",
    ]
    (args.out / "LICENSES.md").write_text("\n".join(lines))
    print(f"{args.out}: {len(table)} images; licences: {dict(licences)}")


if __name__ == "__main__":
    main()
