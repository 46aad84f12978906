import pandas as pd

from cxrlab.data.stats import class_balance, compute_stats


def _manifest(splits):
    n = len(splits)
    return pd.DataFrame(
        {
            "split": splits,
            "label": ["covid", "normal"] * (n // 2) + ["covid"] * (n % 2),
            "source": ["s"] * n,
            "duplicate_group": [""] * n,
            "sha256": [str(i) for i in range(n)],
            "patient_id": [str(i) for i in range(n)],
            "covid": [1] * n,
            "mode": ["L"] * n,
            "width": [10] * n,
            "height": [10] * n,
        }
    )


def test_splits_are_ordered_train_val_test_then_others():
    manifest = _manifest(["test", "val", "train", "", "extra", "test", "train", "val"])
    assert list(class_balance(manifest).index) == ["train", "val", "test", "extra", "unsplit"]
    stats = compute_stats(manifest)
    assert list(stats["class_balance_per_split"]) == ["train", "val", "test", "extra", "unsplit"]
