"""Experiment-level analysis helpers: sample-ratio-mismatch check and multiple-testing corrections."""

from __future__ import annotations

from counterfeed.analysis.multiple import METHODS, adjust_pvalues, bonferroni_level
from counterfeed.analysis.srm import srm_check

__all__ = ["srm_check", "adjust_pvalues", "bonferroni_level", "METHODS"]
