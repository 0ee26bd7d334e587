"""Metrics from a confusion matrix agree with scikit-learn's."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from zoo.labeling.metrics import confusion_matrix, from_confusion


@pytest.mark.parametrize("present_only", [True, False])
def test_macro_and_weighted_averages_match_scikit_learn(present_only: bool) -> None:
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (200,), generator=g)  # class 4 never occurs
    preds = torch.where(
        torch.rand(200, generator=g) < 0.6, targets, torch.randint(0, 4, (200,), generator=g)
    )
    m = from_confusion(confusion_matrix(preds, targets, 5), present_only=present_only)
    labels = None if present_only else list(range(5))
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            targets, preds, labels=labels, average=average, zero_division=0
        )
        prefix = "" if average == "macro" else "weighted_"
        assert m[f"{prefix}precision"] == pytest.approx(p, abs=1e-12)
        assert m[f"{prefix}recall"] == pytest.approx(r, abs=1e-12)
        assert m[f"{prefix}f1"] == pytest.approx(f, abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(targets, preds))
    assert m["averaged_classes"] == (4 if present_only else 5)
