"""Run every benchmark (``make bench``); each prints its own side-by-side ratio.

``python benchmarks/run_all.py [NAME ...]`` runs only ``bench_NAME.py`` for each NAME
(``make bench BENCH=scale``). bench_scale reads its N from ``SCALE_N`` (default 30,000).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        known = {script.stem.removeprefix("bench_"): script for script in scripts}
        unknown = [name for name in names if name not in known]
        if unknown:
            print(f"no benchmark {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
            return 2
        scripts = [known[name] for name in names]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
