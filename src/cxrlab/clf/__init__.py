"""COVID-19 classifiers trained correctly and evaluated honestly.

* :mod:`~cxrlab.clf.models`: ``simple-cnn``, ``resnet18``, ``densenet121-xrv`` by name;
* :mod:`~cxrlab.clf.data`: which images train and which judge (generated ones only train);
* :mod:`~cxrlab.clf.trainer`: train on train, choose epoch and threshold on val, test once;
* :mod:`~cxrlab.clf.metrics`: metrics with patient-bootstrap intervals;
* :mod:`~cxrlab.clf.evaluate`: evaluating a run on any PACKED, plots, predictions;
* :mod:`~cxrlab.clf.explain`: Grad-CAM and the lung-hidden shortcut probe.
"""

from cxrlab.clf.config import ClfConfig
from cxrlab.clf.evaluate import RunEvaluation, evaluate_run
from cxrlab.clf.explain import GradCam, hide_lungs, shortcut_verdict
from cxrlab.clf.metrics import Evaluation, binary_metrics, bootstrap_intervals, youden_threshold
from cxrlab.clf.models import Classifier, ModelSpec, build_classifier
from cxrlab.clf.trainer import RunResult, SeedResult, train_classifier

__all__ = [
    "Classifier",
    "ClfConfig",
    "Evaluation",
    "GradCam",
    "ModelSpec",
    "RunEvaluation",
    "RunResult",
    "SeedResult",
    "binary_metrics",
    "bootstrap_intervals",
    "build_classifier",
    "evaluate_run",
    "hide_lungs",
    "shortcut_verdict",
    "train_classifier",
    "youden_threshold",
]
