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
leave-site-out validation chooses goes into that module's table.
"""

from __future__ import annotations

import argparse
import json
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
}

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


def prepare_data(args: argparse.Namespace) -> Path:
    """Import, split and preprocess the dev data into ``OUT/``; each step is reused when
    its output is there (the preprocess step checks its own options)."""
    from cxrlab.data.api import import_source, split_dataset
    from cxrlab.data.packed import preprocess_dataset
    from cxrlab.preprocess.transforms import PreprocessOptions

    if args.packed:
        return Path(args.packed)
    out = Path(args.out)
    dataset = out / "dataset"
    if not (dataset / "dataset.json").is_file():
        import_source("ieee8023", args.data, dataset, site_from=args.site_from, progress=False)
        split_dataset(dataset, (0.6, 0.2, 0.2), seed=0)
    packed = out / f"packed-{args.size}"
    preprocess_dataset(dataset, packed, PreprocessOptions(size_px=args.size), progress=False)
    return packed


def recipe_config(name: str, packed: Path, run: Path, seed: int, args: argparse.Namespace):
    """The ClfConfig of recipe ``name`` for one seed's leave-site-out run."""
    from cxrlab.clf.config import ClfConfig
    from cxrlab.clf.recipes import with_recipe

    given = {
        "arch": "simple-cnn",  # clf train has no default architecture
        **CANDIDATES[name],
        "data": str(packed),
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


def run_one(name: str, seed: int, packed: Path, args: argparse.Namespace) -> None:
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
    cross_validate(config, resume=run.exists(), progress=False)
    timing_path = run / "timing.json"
    previous = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    timing = {
        "cpu_seconds": round(previous.get("cpu_seconds", 0) + time.process_time() - cpu0, 1),
        "wall_seconds": round(previous.get("wall_seconds", 0) + time.perf_counter() - wall0, 1),
        "threads_note": "process CPU time of this script (all its threads)",
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
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
    """One row per finished (recipe, seed): the pooled figures of its ``cv.json``."""
    rows = []
    for name in CANDIDATES:
        for seed in args.seeds:
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
                    "cpu_seconds": timing.get("cpu_seconds"),
                    "wall_seconds": timing.get("wall_seconds"),
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


def write_table(rows: list[dict], args: argparse.Namespace) -> str:
    """``OUT/recipes.md`` and ``OUT/recipes.json`` from the finished rows."""
    lines = [
        f"Leave-site-out ({args.folds} folds, sites: the `--site-from` column), "
        f"{args.epochs} epochs, {args.size} px; AUCs pooled over folds with 95% "
        "patient-bootstrap intervals; gap = in-site minus out-of-site (paired bootstrap); "
        "fold mean = mean of the folds' own out-of-site AUCs; minus baseline's: on the same "
        "held-out images, paired patient bootstrap. CPU/wall: seconds of the "
        "script's training call (training alone: the folds' own seconds).",
        "",
        "| recipe | seed | in-site AUC | out-of-site AUC | gap | fold-mean out-of-site AUC "
        "| out-of-site AUC minus baseline's | CPU s | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['recipe']} | {row['seed']} | {_interval(row['in_site_auc'])} "
            f"| {_interval(row['out_of_site_auc'])} | {_interval(row['gap_auc'])} "
            f"| {row['fold_mean_out_of_site_auc']:.3f} "
            f"| {_interval(row['out_of_site_auc_vs_baseline'])} | {_seconds(row['cpu_seconds'])} "
            f"| {_seconds(row['wall_seconds'])} |"
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
    (out / RESULTS_JSON).write_text(json.dumps({"rows": rows, "missing": missing}, indent=2) + "\n")
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
