"""Named bundles of ``clf train`` options: ``cxrlab clf train --recipe NAME``.

A recipe is one row of :data:`RECIPES`: option values by
:class:`~cxrlab.clf.config.ClfConfig` field name. It sets every option of its row
that the command line (or a study spec) did not give; a given option always wins, so
``--recipe baseline --augment mild`` is the baseline with mild augmentation. The run
records the recipe's name in its ``config.yaml`` beside the values it ended with.

``baseline`` is ``clf train``'s defaults, spelled out (a test keeps them equal);
``transfer`` is the one ``scripts/transfer_recipes.py`` chose (evidence at its row).
A recipe is added here only once leave-site-out validation (``clf train --cv
sites``) has chosen it; this table is the one place recipes live.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxrlab.errors import CxrlabError

#: The :class:`~cxrlab.clf.config.ClfConfig` fields a recipe may set: how a model is
#: built and trained, never which data, where, how often or on which device.
RECIPE_FIELDS = (
    "arch",
    "augment",
    "balance",
    "oversample_positive",
    "standardize",
    "freeze_backbone",
    "pretrained",
    "head",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "schedule",
    "min_lr_fraction",
)

#: name -> option values (ClfConfig field names).
RECIPES: dict[str, dict[str, Any]] = {
    # clf train's defaults as they are (the from-scratch comparison point)
    "baseline": {
        "augment": "none",
        "balance": "none",
        "oversample_positive": 0,
        "standardize": "none",
        "freeze_backbone": False,
        "pretrained": "auto",
        "head": "logit",
        "epochs": 50,
        "batch_size": 20,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "min_lr_fraction": 0.01,
    },
    # Chosen by leave-site-out validation on the ieee8023 dev data (scripts/
    # transfer_recipes.py: 346 images, 69 not COVID-19; countries as sites, 5 folds,
    # 262 held-out images of 158 patients; 20 epochs, 64 px): the highest mean pooled
    # out-of-site AUC of the recipes run with more than one seed, 0.526 ± 0.020 over
    # seeds 0-2 against the baseline's 0.512 ± 0.032. No clear effect: the paired
    # differences are +0.071 [-0.044, 0.186], -0.011 [-0.210, 0.172] and -0.019
    # [-0.195, 0.207] (seeds 0, 1, 2), all holding 0; lungs crop/mask, per-fold
    # pretraining and ResNet-18 were not run yet (README, recipe table).
    "transfer": {
        "arch": "simple-cnn",
        "augment": "mild+acquisition",
        "balance": "oversample",
        "oversample_positive": 0,
        "standardize": "zscore",
        "freeze_backbone": False,
        "pretrained": "auto",
        "head": "logit",
        "epochs": 20,
        "batch_size": 20,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "min_lr_fraction": 0.01,
    },
}


def recipe_options(name: str) -> dict[str, Any]:
    """The option values of recipe ``name``.

    Raises:
        CxrlabError: for a name not in :data:`RECIPES`, listing the known ones.
    """
    if name not in RECIPES:
        raise CxrlabError(f"--recipe {name!r} is not known; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])


def with_recipe(name: str | None, values: Mapping[str, Any], given: set[str]) -> dict[str, Any]:
    """``values`` (a config's fields) with recipe ``name``'s options set wherever they
    were not ``given`` (the field names set explicitly); unchanged for ``name`` None.

    Raises:
        CxrlabError: an unknown recipe.
    """
    result = dict(values)
    if name is None:
        return result
    for field_name, value in recipe_options(name).items():
        if field_name not in given:
            result[field_name] = value
    result["recipe"] = name
    return result


def unapplied_recipe(name: str, config: Any) -> None:
    """Refuse a config that names recipe ``name`` but holds none of what it changes.

    A config records its recipe; only :func:`with_recipe` applies one. A config built
    with ``recipe=NAME`` alone (a study spec, a script) would record a recipe it never
    used: when every option the recipe sets away from ``clf train``'s default is still
    at that default, this is that mistake (giving all of them back explicitly is not
    a use of the recipe either).

    Raises:
        CxrlabError: an unknown recipe, or one that was not applied.
    """
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(config)}
    changes = {k: v for k, v in recipe_options(name).items() if defaults.get(k) != v}
    if changes and all(getattr(config, k) == defaults.get(k) for k in changes):
        raise CxrlabError(
            f"recipe {name!r} is recorded but not applied (none of "
            f"{', '.join(f'{k}={v!r}' for k, v in changes.items())} is set); build the "
            "config with cxrlab.clf.recipes.with_recipe, as clf train --recipe does"
        )
