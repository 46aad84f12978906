"""Harmonised labels: the one vocabulary every source's class names and findings map onto.

Names are read as lower-case words: ``-``, ``_``, ``/``, punctuation, spaces and
the letter/digit boundary separate words (``Non-COVID``, ``non_covid`` and
``NonCOVID`` read alike; ``H1N1`` is ``h 1 n 1``, and so are the phrases it is
compared with):

=========  =====  ================================================================
label      covid  names
=========  =====  ================================================================
covid      1      COVID-19 or SARS-CoV-2 with no negation anywhere in the name
                  (``COVID``, ``COVID-19``, ``covid19``, ``Pneumonia/Viral/COVID-19``,
                  ``COVID-19, ARDS``, ``COVID-19 positive``, ``covid_1``); ``positive``,
                  and ``1`` when it is the whole name (binary COVIDx, Kaggle folders)
negative   0      COVID named with a negation anywhere in the name (``Non-COVID``,
                  ``NonCOVID``, ``not COVID``, ``Negative for COVID-19``,
                  ``COVID-19 (PCR negative)``, ``SARS-CoV-2 negative``, ``covid_0``);
                  ``negative``, ``PCR negative``, and ``0`` when it is the whole name
normal     0      ``normal``, ``healthy``, ``No Finding`` and its variants
pneumonia  0      pneumonia and its causes (``Viral Pneumonia``, SARS, MERS, H1N1,
                  Streptococcus, Pneumocystis, ARDS, ...); ``Lung Opacity`` / ``Lung_Opacity``
                  (RSNA's pneumonia class, from which the Radiography Database's is
                  drawn); a negated COVID beside it (``Non-COVID pneumonia``)
other      0      tuberculosis, ``other``, ``abnormal``, ``Not Normal``,
                  ``No Lung Opacity / Not Normal`` and other non-pneumonia findings
=========  =====  ================================================================

A digit is a class only as the whole name, or as ``0``/``1`` right after a COVID
mention (``covid_0``): ``seed0``, ``run1``, ``site1`` and ``group_1`` state no class.
``''``, ``todo``, ``unknown``, ``unlabelled``: no label (None), and so are names none
of the words above know. A negation never makes a positive: a name that says both
positive and negative, negates one COVID mention and not another
(``covid_vs_noncovid``), hedges (``COVID 19 uncertain``), negates a class that is not
COVID (``Non-pneumonia``), names COVID and normal, or two classes at once is
ambiguous: :class:`LabelError`, never a guess. A comma-separated list of findings is
COVID when any finding is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cxrlab.errors import DatasetError

COVID = "covid"
NEGATIVE = "negative"
NORMAL = "normal"
PNEUMONIA = "pneumonia"
OTHER = "other"

#: Every harmonised label, and its covid value.
COVID_VALUE = {COVID: 1, NEGATIVE: 0, NORMAL: 0, PNEUMONIA: 0, OTHER: 0}

#: Findings that mean "no label" in the ieee8023 collection (and folders that say so).
UNKNOWN_FINDINGS = {
    "", "todo", "unknown", "nan", "na", "n a", "none", "unlabelled", "unlabeled",
}  # fmt: skip

#: Whole names that are a class by themselves (binary folders and label files).
DIGIT_CLASSES = {"0": (NEGATIVE, 0), "1": (COVID, 1)}

#: Words that negate what follows them.
_NEGATORS = {"non", "not", "no", "without"}
_NEGATIVE_WORDS = {"negative", "neg"}
_POSITIVE_WORDS = {"positive", "pos"}
#: Words that say a COVID diagnosis is not established.
_HEDGES = {
    "uncertain", "suspected", "suspect", "suspicion", "probable", "possible", "indeterminate",
    "equivocal", "pending", "unconfirmed",
}  # fmt: skip
#: One word naming COVID, with a joined negation before or a polarity after it
#: (``NonCOVID``, ``covidpositive``); ``sarscov`` counts only when ``2`` follows.
_JOINED_MENTION = re.compile(r"^(non|not|no)?(covid|ncov|sarscov)(positive|negative|pos|neg)?$")
#: Digits that belong to a COVID mention rather than saying its class.
_MENTION_SUFFIX = {"19", "2019"}

# Phrases by label, in the order they are looked for: a matched phrase is removed
# before the next are tried, so "not normal" is never read as "normal" nor "no lung
# opacity" as "lung opacity", and their "no"/"not" never as a negation. Phrases are
# split into words as names are, so "h1n1" matches "H1N1".
_PHRASE_TEXT: tuple[tuple[str, tuple[str, ...]], ...] = (
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
)  # fmt: skip


class LabelError(DatasetError):
    """A class name or finding is ambiguous: it names more than one class."""


def _words(text: str) -> list[str]:
    """``'Non-COVID_19'`` -> ``['non', 'covid', '19']``."""
    return re.findall(r"[a-z]+|[0-9]+", text.lower())


_PHRASES = tuple(
    (label, tuple(" ".join(_words(phrase)) for phrase in phrases))
    for label, phrases in _PHRASE_TEXT
)


@dataclass
class _Reading:
    """What one name says, word by word."""

    words: list[str]
    used: list[bool]
    #: per COVID mention: whether a negation is attached to it (``Non-COVID``, ``not covid``)
    mentions: list[bool] = field(default_factory=list)
    negative: bool = False  # ``negative``/``neg``/``covid_0``
    positive: bool = False  # ``positive``/``pos``/``covid_1``
    loose_negator: bool = False  # ``no``/``not``/... attached to no COVID mention
    hedged: bool = False
    labels: set[str] = field(default_factory=set)


def _polarity(reading: _Reading, word: str) -> None:
    if word in _NEGATIVE_WORDS:
        reading.negative = True
    elif word in _POSITIVE_WORDS:
        reading.positive = True


def _read_mentions(reading: _Reading, token_of: list[int]) -> None:
    """Find every COVID-19 / SARS-CoV-2 mention, with the negation or 0/1 attached to it."""
    words, used = reading.words, reading.used
    i = 0
    while i < len(words):
        joined = _JOINED_MENTION.match(words[i])
        prefix = suffix = None
        if joined and (joined.group(2) != "sarscov" or words[i + 1 : i + 2] == ["2"]):
            prefix, name, suffix = joined.groups()
            end = i + 2 if name == "sarscov" else i + 1
        elif words[i : i + 3] == ["sars", "cov", "2"]:
            name, end = "sarscov", i + 3
        else:
            i += 1
            continue
        if name == "covid" and words[end : end + 1] and words[end] in _MENTION_SUFFIX:
            end += 1
        if name == "ncov" and i > 0 and words[i - 1] == "2019":
            used[i - 1] = True
        negated = prefix is not None
        if not negated and i > 0 and words[i - 1] in _NEGATORS and not used[i - 1]:
            negated = used[i - 1] = True
        if suffix:
            _polarity(reading, "positive" if suffix.startswith("pos") else "negative")
        # ``covid_0``/``covid1``: a 0/1 right after the mention, not part of a longer
        # token (``covid_seed0`` states nothing)
        if words[end : end + 1] in (["0"], ["1"]) and (
            token_of[end] == token_of[end - 1] or token_of.count(token_of[end]) == 1
        ):
            _polarity(reading, "negative" if words[end] == "0" else "positive")
            end += 1
        for j in range(i, end):
            used[j] = True
        reading.mentions.append(negated)
        i = end


def _read(text: str) -> _Reading | None:
    """Read ``text`` into mentions, polarity and classes; None when it says "no label"."""
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    words: list[str] = []
    token_of: list[int] = []
    for index, token in enumerate(tokens):
        for word in _words(token):
            words.append(word)
            token_of.append(index)
    if " ".join(words) in UNKNOWN_FINDINGS:
        return None
    reading = _Reading(words, [False] * len(words))
    _read_mentions(reading, token_of)
    # "|" stands for a word already read, so no phrase spans it
    rest = " " + " ".join("|" if u else w for w, u in zip(words, reading.used, strict=True)) + " "
    for label, phrases in _PHRASES:
        for phrase in phrases:
            if f" {phrase} " in rest:
                reading.labels.add(label)
                rest = rest.replace(f" {phrase} ", " | ")
    for word in rest.split():
        _polarity(reading, word)
        reading.loose_negator |= word in _NEGATORS
        reading.hedged |= word in _HEDGES
    return reading


def _harmonise_one(text: str) -> tuple[str, int] | None:
    if text.strip() in DIGIT_CLASSES:
        return DIGIT_CLASSES[text.strip()]
    reading = _read(text)
    if reading is None:
        return None
    found = set(reading.labels)
    if reading.loose_negator and (reading.positive or reading.negative):
        raise LabelError(f"{text!r} is ambiguous: it negates a positive or negative")
    if reading.mentions:
        if any(reading.mentions) and not all(reading.mentions):
            raise LabelError(f"{text!r} is ambiguous: it names COVID-19 and its negation")
        if reading.hedged:
            raise LabelError(f"{text!r} is ambiguous: it does not state a COVID-19 result")
        negated = any(reading.mentions) or reading.negative or reading.loose_negator
        if negated and reading.positive:
            raise LabelError(f"{text!r} is ambiguous: it says COVID-19 positive and negative")
        if negated:  # "Non-COVID pneumonia" is pneumonia; a bare "Non-COVID" is negative
            labels = found or {NEGATIVE}
        else:
            labels = {COVID} | ({NORMAL} & found)
    else:
        if reading.positive and reading.negative:
            raise LabelError(f"{text!r} is ambiguous: it says positive and negative")
        if found and (reading.positive or reading.negative or reading.loose_negator):
            what = "negates" if not reading.positive else "qualifies"
            raise LabelError(f"{text!r} is ambiguous: it {what} {sorted(found)}")
        labels = found | ({NEGATIVE} if reading.negative else set())
        labels |= {COVID} if reading.positive else set()
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
        ``Unknown``, ``seed0``, or words the vocabulary does not know).

    Raises:
        LabelError: naming the text when it names more than one class
            (``covid_vs_noncovid``, ``COVID normal``, ``COVID-19 positive, negative``);
            the caller names the file or folder.
    """
    text = str(finding)
    parts = [part for part in text.split(",") if part.strip()]
    if len(parts) <= 1:
        return _harmonise_one(text)
    return harmonise_findings(parts, name=text)


def harmonise_findings(findings: Iterable[str], name: str | None = None) -> tuple[str, int] | None:
    """Combine several findings of one image: COVID when any is, else the most specific.

    Args:
        findings: the image's findings.
        name: the text they were read from, named in errors (default: the list).

    Raises:
        LabelError: when a finding is ambiguous, or COVID and its negation, or normal
            and a disease, are listed together.
    """
    texts = [str(f) for f in findings]
    subject = f"{name!r} is" if name is not None else f"findings {texts} are"
    labels = {mapped[0] for mapped in map(_harmonise_one, texts) if mapped is not None}
    if not labels:
        return None
    if COVID in labels and NEGATIVE in labels:
        raise LabelError(f"{subject} ambiguous: COVID-19 and its negation")
    for label in (COVID, PNEUMONIA, OTHER, NEGATIVE):
        if label in labels:
            if NORMAL in labels and label != COVID:
                raise LabelError(f"{subject} ambiguous: normal and {label}")
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
