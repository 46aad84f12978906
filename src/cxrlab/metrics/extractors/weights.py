"""Finding a feature extractor's weights file, online or off.

Order of search, first hit wins:

1. ``weights=`` (``--weights PATH``): the file itself, or a folder holding it;
   nothing else is tried when it is given, so a typo never triggers a download;
2. ``$CXRLAB_WEIGHTS_DIR``: a folder holding it (offline machines, shared clusters);
3. the cache of the library that defines the network, where it may already be:
   ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, default
   ``~/.cache/torch/hub/checkpoints``) for Inception, as torch-fidelity and
   torchmetrics keep it; ``~/.torchxrayvision/models_data`` for torchxrayvision;
4. a download into that cache (atomic; a 30 s network timeout), unless
   ``$CXRLAB_OFFLINE`` is set to 1/true/yes or ``download=False``.

When all fail, :class:`MissingWeightsError` names the file, the places searched, the
URL to fetch it from, and the metrics that need no weights.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cxrlab.errors import CxrlabError
from cxrlab.utils.fs import atomic_path

WEIGHTS_DIR_ENV = "CXRLAB_WEIGHTS_DIR"
OFFLINE_ENV = "CXRLAB_OFFLINE"
DOWNLOAD_TIMEOUT_SECONDS = 30.0


class MissingWeightsError(CxrlabError):
    """A weights file is not on this machine and cannot be downloaded.

    Attributes:
        spec: the missing file (None when not known), so that a caller with other
            options (a study spec has no ``--weights``) can give its own fix.
    """

    def __init__(self, message: str, spec: WeightsFile | None = None) -> None:
        super().__init__(message)
        self.spec = spec


@dataclass(frozen=True)
class WeightsFile:
    """One network's weights file and where it comes from.

    Attributes:
        extractor: the extractor's registered name (``inception``, ``xrv``).
        filename: the file's name as published.
        url: where to download it.
        library_cache: returns the folder the defining library caches it in.
        aliases: other published names of the same weights, also accepted in a folder.
    """

    extractor: str
    filename: str
    url: str
    library_cache: Callable[[], Path] = field(compare=False)
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.filename, *self.aliases)


def offline() -> bool:
    """True when ``$CXRLAB_OFFLINE`` forbids downloads."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _in_folder(folder: Path, spec: WeightsFile) -> Path | None:
    for name in spec.names:
        if (folder / name).is_file():
            return folder / name
    return None


def _fix(spec: WeightsFile) -> str:
    return (
        f"Fix: download {spec.url} on a machine with internet and pass --weights "
        f"/path/to/{spec.filename} (or a folder holding it), or put it in "
        f"${WEIGHTS_DIR_ENV}. Metrics that need no weights: swd, diversity, memorization."
    )


def locate_weights(
    spec: WeightsFile, weights: str | Path | None = None, *, download: bool | None = None
) -> Path:
    """Path of ``spec``'s weights file, downloading it into the library cache if allowed.

    Args:
        spec: which file.
        weights: a file, or a folder holding ``spec.filename`` (or an alias).
        download: allow a download; None: allowed unless ``$CXRLAB_OFFLINE`` is set.

    Raises:
        MissingWeightsError: naming the file, where it was looked for and where to get it.
    """
    if weights is not None:
        given = Path(weights).expanduser()
        if given.is_file():
            return given
        if given.is_dir():
            found = _in_folder(given, spec)
            if found:
                return found
            raise MissingWeightsError(
                f"--weights {given}: the folder holds none of {', '.join(spec.names)}, "
                f"the {spec.extractor} extractor's weights. {_fix(spec)}",
                spec,
            )
        raise MissingWeightsError(
            f"--weights {given} does not exist; the {spec.extractor} extractor needs "
            f"{spec.filename}. {_fix(spec)}",
            spec,
        )

    searched = []
    env_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if env_dir:
        searched.append(f"${WEIGHTS_DIR_ENV}={env_dir}")
        found = _in_folder(Path(env_dir).expanduser(), spec)
        if found:
            return found
    cache = spec.library_cache()
    searched.append(str(cache))
    found = _in_folder(cache, spec)
    if found:
        return found

    if download is None:
        download = not offline()
    if not download:
        why = f"downloads are off (${OFFLINE_ENV})" if offline() else "downloads are off"
    else:
        try:
            return download_weights(spec, cache / spec.filename)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            why = f"the download from {spec.url} failed ({getattr(error, 'reason', error)})"
    raise MissingWeightsError(
        f"the {spec.extractor} feature extractor needs its weights file {spec.filename}, "
        f"which is not on this machine, and {why}. Looked in: {'; '.join(searched)}. "
        f"{_fix(spec)}",
        spec,
    )


def download_weights(spec: WeightsFile, target: Path) -> Path:
    """Download ``spec.url`` to ``target`` atomically (no partial file is ever left there)."""
    print(f"downloading {spec.url} -> {target}", file=sys.stderr, flush=True)
    request = urllib.request.Request(spec.url, headers={"User-Agent": "cxrlab"})
    with (
        urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response,
        atomic_path(target) as tmp,
        open(tmp, "wb") as out,
    ):
        shutil.copyfileobj(response, out, length=1 << 20)
    return target
