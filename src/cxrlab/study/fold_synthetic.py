"""Synthetic images a leave-site-out fold may train on: from a generator of its own.

The study's ordinary generator learned every train site, the sites a fold holds out
too, so its images would carry those sites into the fold's training and its
out-of-site figures would not be out of site. Each fold therefore gets:

* ``fold_packed``: a PACKED holding only the fold's training and validation rows (its
  held-out sites' rows, and the PACKED's test and external rows, are not copied), with
  the fold's own ``train``/``val`` roles as its split column;
* a generator with the chosen generator's settings trained on that PACKED's ``train``
  rows (the positive class, as the study's), without metrics: the chosen generator's
  checks stand for its settings;
* the cell's amount of images drawn from it (``gen sample``: their
  ``provenance.json`` names the ids it learned, which the fold's classifier run checks
  against its held-out rows before training).

Everything is cached in the study folder, so every cell of a variant shares a fold's
generator, and every cell asking for the same amount shares its images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxrlab.clf.cv import HELD_OUT, Fold
from cxrlab.data.manifest import dataframe_to_csv_text, manifest_digest
from cxrlab.data.packed import IMAGES, META, open_packed
from cxrlab.errors import CxrlabError
from cxrlab.utils.fs import atomic_dir

#: The marker a finished fold PACKED carries (what it was cut from and for).
FOLD_JSON = "fold.json"


def fold_packed(source: str | Path, fold: Fold, out: str | Path) -> Path:
    """Write (or reuse) the PACKED of ``fold``'s training rows of ``source`` at ``out``.

    Rows are matched by id with the fold's ``splits``; only those with role ``train``
    or ``val`` are copied, with that role as their split. ``meta.json`` keeps the
    source's (preprocessing options, source dataset), so synthetic images drawn from a
    generator of it are checked by id against the classifier's data.

    Raises:
        CxrlabError: when ``source`` holds none of the fold's training rows.
    """
    out = Path(out)
    roles = fold.splits[fold.splits["split"] != HELD_OUT]
    role_of = dict(zip(roles["id"].astype(str), roles["split"], strict=True))
    identity = {
        "source": str(Path(source).resolve()),
        "fold": fold.index,
        "held_out_sites": fold.sites,
        "rows": len(role_of),
    }
    marker = out / FOLD_JSON
    if marker.is_file() and json.loads(marker.read_text()) == identity:
        return out
    data = open_packed(source)
    ids = data.manifest["id"].astype(str)
    keep = np.nonzero(ids.isin(role_of).to_numpy())[0]
    if len(keep) == 0:
        raise CxrlabError(
            f"{source}: none of the {len(role_of)} training rows of {fold.name} is in it; "
            "was it preprocessed from the study's dataset?"
        )
    manifest = data.manifest.iloc[keep].reset_index(drop=True)
    manifest["split"] = manifest["id"].astype(str).map(role_of)
    with atomic_dir(out) as staging:
        np.save(staging / IMAGES, np.ascontiguousarray(data.images[keep]))
        (staging / "manifest.csv").write_text(dataframe_to_csv_text(manifest))
        meta = dict(data.meta)
        meta.update(
            {
                "manifest_sha256": manifest_digest(staging),
                "n_images": len(manifest),
                "shape": [len(manifest), *data.images.shape[1:]],
                "fold_of": identity,
            }
        )
        (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        (staging / FOLD_JSON).write_text(json.dumps(identity, indent=2) + "\n")
    return out
