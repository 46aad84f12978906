"""Harmonised labels: the one vocabulary every source's class names and findings map onto.

Names are compared as lower-case words (``-``, ``_``, ``/``, spaces and the
letter/digit boundary all separate words, so ``Non-COVID``, ``non_covid`` and
``NonCOVID`` read alike):

=========  =====  ================================================================
label      covid  names
=========  =====  ================================================================
covid      1      COVID-19 or SARS-CoV-2 without a negation (``COVID``, ``COVID-19``,
                  ``covid19``, ``Pneumonia/Viral/COVID-19``, ``COVID-19, ARDS``);
                  ``positive``, ``1`` (binary COVIDx, synthetic sub-folders)
negative   0      a negated COVID (``Non-COVID``, ``non_covid``, ``NonCOVID``,
                  ``COVID-negative``, ``no covid``, ``not covid``); ``negative``, ``0``
normal     0      ``normal``, ``healthy``, ``No Finding`` and its variants
pneumonia  0      pneumonia and its causes (``Viral Pneumonia``, SARS, MERS,
                  Streptococcus, Pneumocystis, ARDS, ...); ``Lung Opacity`` / ``Lung_Opacity``
                  (RSNA's pneumonia class, from which the Radiography Database's is drawn)
other      0      tuberculosis, ``other``, ``abnormal``, ``Not Normal``,
                  ``No Lung Opacity / Not Normal`` and other non-pneumonia findings
=========  =====  ================================================================

``''``, ``todo``, ``unknown``: no label (None). A name naming a class and its
negation, or COVID and normal, or two classes at once, is ambiguous:
:class:`LabelError`, never a guess. Names none of the words above know: None.
A comma-separated list of findings is COVID when any finding is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cxrlab.errors import DatasetError

COVID = "covid"
NEGATIVE = "negative"
NORMAL = "normal"
PNEUMONIA = "pneumonia"
OTHER = "other"

#: Every harmonised label, and its covid value.
COVID_VALUE = {COVID: 1, NEGATIVE: 0, NORMAL: 0, PNEUMONIA: 0, OTHER: 0}

#: Findings that mean "no label" in the ieee8023 collection.
UNKNOWN_FINDINGS = {"", "todo", "unknown", "nan", "na", "n a", "none"}

_NEGATORS = {"non", "not", "no", "without", "negative", "neg"}
_JOINED_NEGATION = re.compile(r"^(non|not|no)(covid|sarscov)$")

# Phrases (space-separated words), by label, in the order they are looked for: a
# matched phrase is removed before the next are tried, so "not normal" is never
# read as "normal" nor "no lung opacity" as "lung opacity".
_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (OTHER, ("not normal", "no lung opacity", "abnormal", "tuberculosis", "tb", "other",
             "others", "effusion", "nodule", "mass", "atelectasis", "cardiomegaly",
             "fibrosis", "emphysema", "edema", "pneumothorax", "lung lesion")),
    (NORMAL, ("no finding", "no findings", "nofinding", "normal", "healthy")),
    (PNEUMONIA, ("pneumonia", "pneumonias", "lung opacity", "lung opacities", "viral",
                 "bacterial", "bacteria", "fungal", "aspiration", "lipoid", "sars", "mers",
                 "ards", "streptococcus", "klebsiella", "legionella", "pneumocystis", "pcp",
                 "chlamydophila", "chlamydia", "mycoplasma", "influenza", "h1n1", "varicella",
                 "herpes", "e coli", "staphylococcus", "aspergillosis", "nocardia",
                 "lung infection", "infection")),
    (NEGATIVE, ("negative", "0")),
    (COVID, ("positive", "1")),
)  # fmt: skip


class LabelError(DatasetError):
    """A class name or finding is ambiguous: it names more than one class."""


def _words(text: str) -> list[str]:
    """``'Non-COVID_19'`` -> ``['non', 'covid', '19']``."""
    return re.findall(r"[a-z]+|[0-9]+", text.lower())


def _covid_mentions(words: list[str]) -> tuple[bool, bool]:
    """(named positively, named with a negation) for COVID-19 / SARS-CoV-2 in ``words``."""
    positive = negated = False
    for i, word in enumerate(words):
        if _JOINED_NEGATION.match(word):
            negated = True
            continue
        sars_cov_2 = word == "sars" and words[i + 1 : i + 3] == ["cov", "2"]
        if word not in ("covid", "sarscov") and not sars_cov_2:
            continue
        after = [w for w in words[i + 1 : i + 4] if not w.isdigit() and w != "cov"]
        if (i > 0 and words[i - 1] in _NEGATORS) or (after and after[0] in _NEGATORS):
            negated = True
        else:
            positive = True
    return positive, negated


def _harmonise_one(text: str) -> tuple[str, int] | None:
    words = _words(text)
    if " ".join(words) in UNKNOWN_FINDINGS:
        return None
    positive, negated = _covid_mentions(words)
    if positive and negated:
        raise LabelError(f"{text!r} is ambiguous: it names COVID-19 and its negation")
    rest = f" {' '.join(words)} "
    found: list[str] = []
    for label, phrases in _PHRASES:
        for phrase in phrases:
            if f" {phrase} " in rest:
                found.append(label)
                rest = rest.replace(f" {phrase} ", " ")
    if negated:  # "Non-COVID pneumonia" is pneumonia; a bare "Non-COVID" is negative
        labels = {label for label in found if label not in (NEGATIVE, COVID)} or {NEGATIVE}
    elif positive:
        labels = {COVID} | ({NORMAL} & set(found))
    else:
        labels = set(found)
    if labels == {PNEUMONIA, OTHER}:  # "tuberculosis pneumonia": pneumonia decides
        labels = {PNEUMONIA}
    if len(labels) > 1:
        raise LabelError(f"{text!r} is ambiguous: it names {sorted(labels)}")
    if not labels:
        return None
    label = labels.pop()
    return label, COVID_VALUE[label]


def harmonise(finding: str) -> tuple[str, int] | None:
    """Map a class name, a finding or a comma-separated list of findings to (label, covid).

    Returns:
        (label, covid), or None when the text states no known class (``todo``, ``''``,
        ``Unknown``, or words the vocabulary does not know).

    Raises:
        LabelError: when the text names more than one class (``covid_vs_noncovid``,
            ``COVID normal``); the caller names the file or folder.
    """
    parts = [part for part in str(finding).split(",") if part.strip()]
    if len(parts) <= 1:
        return _harmonise_one(str(finding))
    return harmonise_findings(parts)


def harmonise_findings(findings: Iterable[str]) -> tuple[str, int] | None:
    """Combine several findings of one image: COVID when any is, else the most specific.

    Raises:
        LabelError: when a finding is ambiguous, or normal is listed beside a disease.
    """
    texts = [str(f) for f in findings]
    labels = {mapped[0] for mapped in map(_harmonise_one, texts) if mapped is not None}
    if not labels:
        return None
    if COVID in labels and NEGATIVE in labels:
        raise LabelError(f"findings {texts} are ambiguous: COVID-19 and its negation")
    for label in (COVID, PNEUMONIA, OTHER, NEGATIVE):
        if label in labels:
            if NORMAL in labels and label != COVID:
                raise LabelError(f"findings {texts} are ambiguous: normal and {label}")
            return label, COVID_VALUE[label]
    return NORMAL, 0


def class_label(name: str, where: str) -> tuple[str, int]:
    """(label, covid) that a class folder's name states; ``where`` names the folder in errors.

    Raises:
        DatasetError: naming ``where`` when the name is ambiguous or states no class.
    """
    try:
        mapped = harmonise(name)
    except LabelError as error:
        raise DatasetError(
            f"{where}: {error}; rename it (see the labels table in README)"
        ) from None
    if mapped is None:
        raise DatasetError(
            f"{where}: {name!r} states no class; name it e.g. COVID-19, Non-COVID, Normal, "
            "Viral Pneumonia, Tuberculosis, positive or negative (see the labels table in README)"
        )
    return mapped
