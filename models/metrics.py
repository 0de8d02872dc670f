"""Classification figures, numpy only: the trainer, the exporter and the benchmark
score predictions the same way, and a deploy-only install (no torch) can too."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros_like(tp), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros_like(tp), where=confusion.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = confusion.sum(1) > 0  # macro-F1 over the classes that occur in the test set
    return {
        "accuracy": round(float(tp.sum() / max(1, confusion.sum())), 4),
        "macro_f1": round(float(f1[present].mean()), 4),
        "confusion": confusion.tolist(),
    }
