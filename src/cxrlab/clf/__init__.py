"""COVID-19 classifiers trained correctly and evaluated honestly.

* :mod:`~cxrlab.clf.models`: ``simple-cnn``, ``resnet18``, ``densenet121-xrv`` by name;
* :mod:`~cxrlab.clf.data`: which images train and which judge (generated ones only train);
* :mod:`~cxrlab.clf.trainer`: train on train, choose epoch and threshold on val, test once;
* :mod:`~cxrlab.clf.metrics`: metrics with patient-bootstrap intervals;
* :mod:`~cxrlab.clf.evaluate`: evaluating a run on any PACKED, plots, predictions;
* :mod:`~cxrlab.clf.explain`: Grad-CAM and the lung-hidden shortcut probe;
* :mod:`~cxrlab.clf.cv`: leave-site-out cross-validation (``clf train --cv sites``);
* :mod:`~cxrlab.clf.pretrain`: self-supervised backbone pretraining (``clf pretrain``);
* :mod:`~cxrlab.clf.recipes`: named ``clf train`` presets (``--recipe``);
* :mod:`~cxrlab.clf.unlabelled`: predictions for new, unlabelled files (``clf predict``).
"""

from cxrlab.utils.lazy import lazy_exports

_EXPORTS = {
    "Classifier": "cxrlab.clf.models",
    "ClfConfig": "cxrlab.clf.config",
    "Evaluation": "cxrlab.clf.metrics",
    "GradCam": "cxrlab.clf.explain",
    "ModelSpec": "cxrlab.clf.models",
    "RunEvaluation": "cxrlab.clf.evaluate",
    "RunResult": "cxrlab.clf.trainer",
    "SeedResult": "cxrlab.clf.trainer",
    "binary_metrics": "cxrlab.clf.metrics",
    "bootstrap_intervals": "cxrlab.clf.metrics",
    "build_classifier": "cxrlab.clf.models",
    "cross_validate": "cxrlab.clf.cv",
    "evaluate_run": "cxrlab.clf.evaluate",
    "hide_lungs": "cxrlab.clf.explain",
    "predict_files": "cxrlab.clf.unlabelled",
    "pretrain_backbone": "cxrlab.clf.pretrain",
    "shortcut_verdict": "cxrlab.clf.explain",
    "train_classifier": "cxrlab.clf.trainer",
    "with_recipe": "cxrlab.clf.recipes",
    "youden_threshold": "cxrlab.clf.metrics",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
