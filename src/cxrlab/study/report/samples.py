"""The report's generated samples: the last grid of each generator run."""

from __future__ import annotations

import re
from pathlib import Path

from cxrlab.study.report.generators import _generator_runs
from cxrlab.study.report.html import _figure, _note, _section
from cxrlab.study.report.study import Study

SAMPLE_PATTERN = re.compile(r"step_(\d+)\.png$")


def last_sample(folder: Path) -> Path | None:
    """The ``samples/step_NNNNNN.png`` of the highest step in a generator run, or None."""
    samples = [
        (int(match.group(1)), path)
        for path in (folder / "samples").glob("step_*.png")
        if (match := SAMPLE_PATTERN.search(path.name))
    ]
    return max(samples)[1] if samples else None


def samples_section(study: Study) -> str:
    parts = []
    for variant, named in _generator_runs(study).items():
        for name, folder in named:
            sample = last_sample(folder)
            if sample is not None:
                step = int(SAMPLE_PATTERN.search(sample.name).group(1))
                parts.append(
                    _figure(
                        study,
                        sample.relative_to(study.root.resolve()),
                        f"{variant} / {name}, step {step}",
                    )
                )
    body = "\n".join(parts) if parts else _note("no generator samples found.")
    return _section("samples", "Generated samples (last step of each generator)", body)
