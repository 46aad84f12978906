"""Compare ``clf train`` recipes under leave-site-out cross-validation on the dev data.

Rerun with::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/transfer_recipes.py --out runs/recipes

It imports the ieee8023 data (sites from ``--site-from``), splits it 0.6/0.2/0.2 by
patient (seed 0), preprocesses it at 64 px (each step reused when its output is already
there), then, for every recipe of ``--recipes`` and every seed of ``--seeds``, runs
``clf train --cv sites`` (:func:`cxrlab.clf.cv.cross_validate`) in
``OUT/runs/RECIPE/seed-N``. A finished run is not trained again and an interrupted one
resumes, so the script can be stopped and started. ``OUT/recipes.md`` (a Markdown table)
and ``OUT/recipes.json`` collect what has finished.

A recipe here is ``baseline`` (``clf train``'s defaults, from
:mod:`cxrlab.clf.recipes`) plus the overrides of :data:`CANDIDATES`; only one that
leave-site-out validation chooses goes into that module's table. Two keys of a
candidate are not ``ClfConfig`` options:

* ``lungs`` (``crop`` or ``mask``) trains on another PACKED, ``OUT/packed-SIZE-lungs-
  MODE``, preprocessed with ``--lungs MODE --lung-masks OUT/masks``. The masks are
  ``cxrlab seg predict``'s for every image, from a ``cxrlab seg train`` (128 px, 100
  epochs, seed 0) on the lungVAE masks (``annotations/lungVAE-masks``) of the
  dataset's ``train`` rows, validated on its ``val`` rows; both reused when there.
* ``pretrain_epochs`` is ``clf train --pretrain-epochs``: every fold pretrains its
  own SimCLR backbone on its own training rows (:mod:`cxrlab.clf.cv`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

#: name -> ClfConfig overrides on top of the ``baseline`` recipe. Ordered so that the
#: most informative comparisons run first when time is short.
CANDIDATES: dict[str, dict] = {
    "baseline": {},
    "acquisition+standardized+balanced": {
        "augment": "mild+acquisition",
        "standardize": "zscore",
        "balance": "oversample",
    },
    "balanced": {"balance": "oversample"},
    "standardized": {"standardize": "zscore"},
    "acquisition": {"augment": "mild+acquisition"},
    "resnet18": {"arch": "resnet18", "pretrained": "none"},
    "lungs-crop": {"lungs": "crop"},
    "lungs-mask": {"lungs": "mask"},
    "pretrained": {"pretrain_epochs": 20},
    # the transfer recipe with each of the two newer ingredients
    "transfer+lungs-crop": {
        "augment": "mild+acquisition",
        "standardize": "zscore",
        "balance": "oversample",
        "lungs": "crop",
    },
    "transfer+pretrained": {
        "augment": "mild+acquisition",
        "standardize": "zscore",
        "balance": "oversample",
        "pretrain_epochs": 20,
    },
}
#: Candidate keys that are not ClfConfig options (see the module doc).
NOT_OPTIONS = ("lungs",)
#: The recipe ``clf train --recipe transfer`` holds (``clf/recipes.py``).
TRANSFER = "acquisition+standardized+balanced"

#: The lung segmenter behind the lungs recipes' masks (README "Lungs": Dice 0.947).
SEG_SIZE = 128
SEG_EPOCHS = 100

RESULTS_MD = "recipes.md"
RESULTS_JSON = "recipes.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ieee8023-2020-06", help="ieee8023 folder")
    parser.add_argument("--out", required=True, help="folder for the data, the runs and the table")
    parser.add_argument("--site-from", default="location", help="ieee8023 site column")
    parser.add_argument(
        "--packed",
        default=None,
        help="an existing split PACKED with sites to use instead of importing --data",
    )
    parser.add_argument("--recipes", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--table-only", action="store_true", help="only rewrite the table")
    return parser.parse_args(argv)


def prepare_data(args: argparse.Namespace) -> dict[str, Path]:
    """Import, split and preprocess the dev data into ``OUT/``; each step is reused when
    its output is there (the preprocess step checks its own options). The PACKED per
    ``lungs`` mode the chosen recipes need (``none``: the plain one)."""
    from cxrlab.data.api import import_source, split_dataset
    from cxrlab.data.packed import preprocess_dataset
    from cxrlab.preprocess.transforms import PreprocessOptions

    modes = sorted({CANDIDATES[name].get("lungs", "none") for name in args.recipes})
    if args.packed:
        if modes != ["none"]:
            raise SystemExit(f"--packed cannot serve the lungs recipes ({', '.join(modes)})")
        return {"none": Path(args.packed)}
    out = Path(args.out)
    dataset = out / "dataset"
    if not (dataset / "dataset.json").is_file():
        import_source("ieee8023", args.data, dataset, site_from=args.site_from, progress=False)
        split_dataset(dataset, (0.6, 0.2, 0.2), seed=0)
    packed = {}
    masks = lung_masks(dataset, args) if modes != ["none"] else None
    for mode in modes:
        path = out / (f"packed-{args.size}" if mode == "none" else f"packed-{args.size}-lungs-{mode}")  # fmt: skip
        options = PreprocessOptions(size_px=args.size, lungs=mode)
        preprocess_dataset(dataset, path, options, lung_masks=masks if mode != "none" else None, progress=False)  # fmt: skip
        packed[mode] = path
    return packed


def lung_masks(dataset: Path, args: argparse.Namespace) -> Path:
    """``OUT/masks``: ``seg predict``'s lung mask for every image of ``dataset``, from a
    ``seg train`` on the lungVAE masks of its train rows (``OUT/seg``); reused when there."""
    from cxrlab.seg.config import SegConfig
    from cxrlab.seg.predict import predict_masks
    from cxrlab.seg.trainer import train_segmenter

    out = Path(args.out)
    seg, masks = out / "seg", out / "masks"
    if not (seg / "metrics.json").is_file():
        config = SegConfig(
            data=str(dataset), out=str(seg), size_px=SEG_SIZE, epochs=SEG_EPOCHS, seed=0, device=args.device
        )  # fmt: skip
        started = (seg / "checkpoints" / "last.pt").is_file()
        print(f"lung segmenter: training in {seg}", flush=True)
        train_segmenter(config, resume=started, progress=False)
    if not (masks / "masks.csv").is_file():
        print(f"lung masks: predicting into {masks}", flush=True)
        predict_masks(seg, dataset, masks, device=args.device, progress=False)
    return masks


def recipe_config(
    name: str, packed: dict[str, Path], run: Path, seed: int, args: argparse.Namespace
):
    """The ClfConfig of recipe ``name`` for one seed's leave-site-out run."""
    from cxrlab.clf.config import ClfConfig
    from cxrlab.clf.recipes import with_recipe

    options = {k: v for k, v in CANDIDATES[name].items() if k not in NOT_OPTIONS}
    given = {
        "arch": "simple-cnn",  # clf train has no default architecture
        **options,
        "data": str(packed[CANDIDATES[name].get("lungs", "none")]),
        "out": str(run),
        "epochs": args.epochs,
        "seeds": [seed],
        "cv": "sites",
        "folds": args.folds,
        "device": args.device,
        "bootstrap": args.bootstrap,
    }
    return ClfConfig(**with_recipe("baseline", given, set(given)))


def run_dir(args: argparse.Namespace, name: str, seed: int) -> Path:
    return Path(args.out) / "runs" / name / f"seed-{seed}"


def finished(run: Path, epochs: int) -> bool:
    """Whether ``run`` holds a complete cross-validation with ``epochs`` epochs."""
    path = run / "cv.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text())
    return summary.get("epochs") == epochs and len(summary.get("folds", [])) > 0


def run_one(name: str, seed: int, packed: dict[str, Path], args: argparse.Namespace) -> None:
    """Cross-validate recipe ``name`` with ``seed`` unless it has finished; record its
    CPU and wall seconds (this call's) in ``timing.json`` beside ``cv.json``."""
    from cxrlab.clf.cv import cross_validate

    run = run_dir(args, name, seed)
    if finished(run, args.epochs):
        print(f"{name} seed {seed}: finished before")
        return
    print(f"{name} seed {seed}: training in {run}", flush=True)
    config = recipe_config(name, packed, run, seed, args)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    cross_validate(config, resume=run.exists(), progress=False)
    timing_path = run / "timing.json"
    previous = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    timing = {
        "cpu_seconds": round(previous.get("cpu_seconds", 0) + time.process_time() - cpu0, 1),
        "wall_seconds": round(previous.get("wall_seconds", 0) + time.perf_counter() - wall0, 1),
        "threads_note": "process CPU time of this script (all its threads)",
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        # 1-minute load averages when this call started and ended (2 shared cores)
        "load": [*previous.get("load", []), round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    timing_path.write_text(json.dumps(timing, indent=2) + "\n")


def _interval(estimate: dict | None) -> str:
    if not estimate or estimate.get("value") is None:
        return "n/a"
    low, high = estimate.get("low"), estimate.get("high")
    if low is None or high is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} [{low:.3f}, {high:.3f}]"


def collect(args: argparse.Namespace) -> list[dict]:
    """One row per finished (recipe, seed) in ``OUT/runs``: the pooled figures of its
    ``cv.json``."""
    rows = []
    for name in CANDIDATES:
        seeds = sorted(int(p.name[5:]) for p in (Path(args.out) / "runs" / name).glob("seed-*"))
        for seed in seeds:  # every seed run so far, not only this call's
            run = run_dir(args, name, seed)
            if not finished(run, args.epochs):
                continue
            summary = json.loads((run / "cv.json").read_text())
            figures = summary["per_seed"][str(seed)]
            timing_path = run / "timing.json"
            timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
            rows.append(
                {
                    "recipe": name,
                    "options": CANDIDATES[name],
                    "seed": seed,
                    "epochs": summary["epochs"],
                    "folds": summary["n_folds"],
                    "in_site_auc": figures["in_site"]["metrics"]["roc_auc"],
                    "out_of_site_auc": figures["out_of_site"]["metrics"]["roc_auc"],
                    "gap_auc": figures["gap"]["roc_auc"],
                    "fold_mean_out_of_site_auc": figures["fold_mean"]["out_of_site_auc"],
                    "fold_mean_in_site_auc": figures["fold_mean"]["in_site_auc"],
                    "out_of_site_images": figures["out_of_site"]["n_images"],
                    "out_of_site_covid": figures["out_of_site"]["n_positive"],
                    "training_seconds": round(sum(f["seconds"] for f in summary["folds"]), 1),
                    "pretrain_seconds": round(
                        sum(f.get("pretrain", {}).get("seconds", 0) for f in summary["folds"]), 1
                    ),
                    "cpu_seconds": timing.get("cpu_seconds"),
                    "wall_seconds": timing.get("wall_seconds"),
                    "load": timing.get("load"),
                    "run": str(run),
                }
            )
    for row in rows:
        row["out_of_site_auc_vs_baseline"] = versus_baseline(row, rows, args.bootstrap)
    return rows


def versus_baseline(row: dict, rows: list[dict], n_resamples: int) -> dict | None:
    """Out-of-site AUC of ``row`` minus the baseline's (same seed, same held-out images),
    with a paired patient-bootstrap interval; None for the baseline or without one."""
    import pandas as pd

    from cxrlab.clf.cv import PREDICTIONS, gap_estimates

    base = [r for r in rows if r["recipe"] == "baseline" and r["seed"] == row["seed"]]
    if row["recipe"] == "baseline" or not base:
        return None
    mine = pd.read_csv(Path(row["run"]) / PREDICTIONS)
    theirs = pd.read_csv(Path(base[0]["run"]) / PREDICTIONS)
    if sorted(mine["id"]) != sorted(theirs["id"]):
        return None  # other folds or data: not a paired comparison
    return gap_estimates(mine, theirs, n_resamples, seed=0)["roc_auc"]


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _mean_sd(values: list[float]) -> str:
    """``mean ± sd`` (sample sd) of the seeds' values; ``value`` for one seed."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.3f}"
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.3f} ± {sd:.3f}"


def _mean_seconds(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{sum(known) / len(known):.0f}" if known else "n/a"


def _value(estimate: dict | None) -> float | None:
    return None if not estimate else estimate.get("value")


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per recipe (in :data:`CANDIDATES` order): the seeds it has and the mean and sd
    over them of each figure; sorted by mean out-of-site AUC, best first."""
    out = []
    for name in CANDIDATES:
        mine = [r for r in rows if r["recipe"] == name]
        if not mine:
            continue
        out_values = [_value(r["out_of_site_auc"]) for r in mine]
        out.append(
            {
                "recipe": name,
                "seeds": [r["seed"] for r in mine],
                "in_site_auc": _mean_sd([_value(r["in_site_auc"]) for r in mine]),
                "out_of_site_auc": _mean_sd(out_values),
                "out_of_site_mean": sum(v for v in out_values if v is not None) / len(mine),
                "gap_auc": _mean_sd([_value(r["gap_auc"]) for r in mine]),
                "fold_mean_out_of_site_auc": _mean_sd(
                    [r["fold_mean_out_of_site_auc"] for r in mine]
                ),  # fmt: skip
                "vs_baseline": _mean_sd([_value(r["out_of_site_auc_vs_baseline"]) for r in mine]),
                "cpu_seconds": _mean_seconds([r["cpu_seconds"] for r in mine]),
            }
        )
    return sorted(out, key=lambda r: -r["out_of_site_mean"])


def write_table(rows: list[dict], args: argparse.Namespace) -> str:
    """``OUT/recipes.md`` and ``OUT/recipes.json`` from the finished rows: a table of
    means over seeds, then one row per recipe and seed with 95% intervals."""
    lines = [
        f"Leave-site-out ({args.folds} folds, sites: the `--site-from` column), "
        f"{args.epochs} epochs, {args.size} px. Over seeds: mean ± sd (sample) of each "
        "seed's pooled figure, best mean out-of-site AUC first. Per seed: AUCs pooled "
        "over folds with 95% patient-bootstrap intervals; gap = in-site minus out-of-site "
        "(paired bootstrap); fold mean = mean of the folds' own out-of-site AUCs; minus "
        "baseline's: on the same held-out images and seed, paired patient bootstrap. "
        "CPU/wall: seconds of the script's training call (pretraining included; the "
        "CPU of an interrupted call is not counted); load: 1-minute load average at the "
        "call's start and end.",
        "",
        "| recipe | seeds | in-site AUC | out-of-site AUC | gap | fold-mean out-of-site AUC "
        "| out-of-site AUC minus baseline's | CPU s (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary_rows(rows):
        lines.append(
            f"| {row['recipe']} | {','.join(map(str, row['seeds']))} | {row['in_site_auc']} "
            f"| {row['out_of_site_auc']} | {row['gap_auc']} | {row['fold_mean_out_of_site_auc']} "
            f"| {row['vs_baseline']} | {row['cpu_seconds']} |"
        )
    lines += [
        "",
        "| recipe | seed | in-site AUC | out-of-site AUC | gap | fold-mean out-of-site AUC "
        "| out-of-site AUC minus baseline's | CPU s | wall s | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        load = row.get("load")
        lines.append(
            f"| {row['recipe']} | {row['seed']} | {_interval(row['in_site_auc'])} "
            f"| {_interval(row['out_of_site_auc'])} | {_interval(row['gap_auc'])} "
            f"| {row['fold_mean_out_of_site_auc']:.3f} "
            f"| {_interval(row['out_of_site_auc_vs_baseline'])} | {_seconds(row['cpu_seconds'])} "
            f"| {_seconds(row['wall_seconds'])} | {'-'.join(map(str, load)) if load else 'n/a'} |"
        )
    missing = [
        f"{name} (seed {seed})"
        for name in args.recipes
        for seed in args.seeds
        if not any(r["recipe"] == name and r["seed"] == seed for r in rows)
    ]
    if missing:
        lines += ["", f"Not finished: {', '.join(missing)}."]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_MD).write_text(text)
    payload = {"summary": summary_rows(rows), "rows": rows, "missing": missing}
    (out / RESULTS_JSON).write_text(json.dumps(payload, indent=2) + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.table_only:
        packed = prepare_data(args)
        for name in args.recipes:
            for seed in args.seeds:
                run_one(name, seed, packed, args)
                write_table(collect(args), args)
    print(write_table(collect(args), args))


if __name__ == "__main__":
    main()
