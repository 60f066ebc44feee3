"""Evaluating folders of predictions against folders of reference segmentations."""

from lungseg_core.evaluation.evaluate import (
    BOXPLOT_PNG,
    CSV_COLUMNS,
    METRICS_CSV,
    EvaluationResult,
    check_reference_folder,
    evaluate_folders,
)
from lungseg_core.evaluation.matching import index_folder, match_cases, match_folders, normalized_case_key

__all__ = [
    "BOXPLOT_PNG",
    "CSV_COLUMNS",
    "METRICS_CSV",
    "EvaluationResult",
    "check_reference_folder",
    "evaluate_folders",
    "index_folder",
    "match_cases",
    "match_folders",
    "normalized_case_key",
]
