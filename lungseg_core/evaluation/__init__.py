"""Evaluating folders of predictions against folders of reference segmentations."""

from lungseg_core.evaluation.evaluate import CSV_COLUMNS, EvaluationResult, evaluate_folders
from lungseg_core.evaluation.matching import index_folder, match_cases, match_folders, normalized_case_key

__all__ = [
    "CSV_COLUMNS",
    "EvaluationResult",
    "evaluate_folders",
    "index_folder",
    "match_cases",
    "match_folders",
    "normalized_case_key",
]
