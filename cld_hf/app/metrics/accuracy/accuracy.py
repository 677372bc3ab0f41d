"""Accuracy as an `evaluate` metric module, shipped with cld-hf so it loads offline by path."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Accuracy: the share of predictions equal to the references."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): ground-truth labels.
    normalize (`bool`, defaults to `True`): return the share (else the count) of correct ones.
Returns:
    accuracy (`float`).
Example (through cld_hf.metrics.load_metric, which loads this file by path):
    metric = load_metric("accuracy")
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])  # {'accuracy': 0.666...}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, normalize=True):
        predictions, references = np.asarray(predictions), np.asarray(references)
        correct = float((predictions == references).sum())
        return {"accuracy": correct / len(references) if normalize else correct}
