"""The paper's studies at small scale: Appendix D.1, D.2, F (LDS) and F.1 (brittleness).

Each study is a function that trains what it needs on a built-in (or saved) dataset, writes
``results.json`` and ``results.md`` into its output directory and returns the results dict
(with the Markdown table under ``"table_markdown"`` and the whole ``results.md`` under
``"markdown"``); ``cld-hf study <name>`` runs it from the command line
(:mod:`cld_hf.app.cli_study`).

============================  ===========================================  ================
``cld-hf study``              function                                     the seed
============================  ===========================================  ================
``lds``                       :func:`lds_study`                            App. F, Fig. 8a
``seed-stability``            :func:`seed_stability_study`                 App. D.1, Fig. 7a
``fraction-sweep``            :func:`fraction_sweep_study`                 App. D.2, Fig. 7b
``brittleness``               :func:`brittleness_study`                    App. F.1, Fig. 8b
============================  ===========================================  ================

Examples
--------
>>> sorted(STUDIES)
['brittleness', 'fraction-sweep', 'lds', 'seed-stability']
"""

from __future__ import annotations

from .brittleness import (BRITTLENESS_METHODS, brittleness_study, class_influence, flip_fraction,
                          top_k_rows)
from .checkpoints import EpochFeatures, predict
from .common import ProxyRun, StudyData, load_study_data, train_on_rows, train_proxy
from .lds import linear_datamodeling_score, lds_study, query_outputs, sample_subsets
from .stability import jaccard, pairwise_mae, seed_stability_study
from .sweep import fraction_sweep_study, smallest_fraction_within

__all__ = [
    "STUDIES",
    "lds_study",
    "seed_stability_study",
    "fraction_sweep_study",
    "brittleness_study",
    "linear_datamodeling_score",
    "sample_subsets",
    "query_outputs",
    "pairwise_mae",
    "jaccard",
    "smallest_fraction_within",
    "class_influence",
    "top_k_rows",
    "flip_fraction",
    "BRITTLENESS_METHODS",
    "EpochFeatures",
    "predict",
    "StudyData",
    "ProxyRun",
    "load_study_data",
    "train_proxy",
    "train_on_rows",
]

STUDIES = {
    "lds": lds_study,
    "seed-stability": seed_stability_study,
    "fraction-sweep": fraction_sweep_study,
    "brittleness": brittleness_study,
}
"""``cld-hf study`` name -> study function (a visible dict)."""
