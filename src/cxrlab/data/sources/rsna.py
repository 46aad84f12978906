"""RSNA Pneumonia Detection Challenge (Kaggle, 2018): the normal and pneumonia source of COVIDx.

https://www.kaggle.com/c/rsna-pneumonia-detection-challenge. Layout:
``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``; one row per
box, so a patient can have several), ``stage_2_detailed_class_info.csv``
(``patientId,class``) and ``stage_2_train_images/<patientId>.dcm``. One image per
patient; its inputs are the distinct patientIds of the class file. Classes:
``Normal`` -> normal, ``Lung Opacity`` -> pneumonia,
``No Lung Opacity / Not Normal`` -> other. None is COVID-19. The ``site`` is the
collection (``rsna``): its images come from one archive (NIH ChestX-ray14).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlab.data.manifest import Candidate, SourceScan
from cxrlab.data.sources.labels import OTHER, harmonise
from cxrlab.errors import DatasetError

#: RSNA's classes, through the one vocabulary: normal, pneumonia, other.
CLASSES = {
    name: harmonise(name)[0] for name in ("Normal", "Lung Opacity", "No Lung Opacity / Not Normal")
}


def scan_rsna(
    path: str | Path, *, source: str = "rsna", images: str = "stage_2_train_images"
) -> SourceScan:
    """Scan an RSNA challenge folder."""
    root = Path(path)
    class_file = root / "stage_2_detailed_class_info.csv"
    if not class_file.is_file():
        raise DatasetError(
            f"{class_file} not found: download the RSNA Pneumonia Detection Challenge "
            "data (stage 2) and point rsna at its folder"
        )
    classes = pd.read_csv(class_file, dtype=str, keep_default_na=False).drop_duplicates("patientId")
    boxes = root / "stage_2_train_labels.csv"
    targets = {}
    if boxes.is_file():
        labels = pd.read_csv(boxes, dtype=str, keep_default_na=False)
        targets = labels.groupby("patientId")["Target"].max().to_dict()
    candidates = []
    for number, record in enumerate(classes.to_dict("records"), start=1):
        patient = record["patientId"]
        candidates.append(
            Candidate(
                id=f"{source}:{patient}",
                path=root / images / f"{patient}.dcm",
                label=CLASSES.get(record["class"], OTHER),
                covid=0,
                patient_id=f"{source}:{patient}",
                source=source,
                row=str(number),
                site="rsna",
                extra={"rsna_class": record["class"], "rsna_target": str(targets.get(patient, ""))},
            )
        )
    return SourceScan(source, candidates, [], len(candidates), {"path": str(root)})
