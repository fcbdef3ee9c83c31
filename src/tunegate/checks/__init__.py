"""Data checks that run before anything is tuned or gated, below the engine.

* text-overlap (contamination) between tuning data and eval rows or benchmark files:
  exact hashes, word 13-grams (:mod:`~tunegate.checks.ngrams`), MinHash/LSH
  (:mod:`~tunegate.checks.minhash`), over rows made plain text (:mod:`~tunegate.checks.textrows`);
* DPO preference files: the one reader (:mod:`~tunegate.checks.preference_file`, used by
  ``tunegate data check`` and ``tunegate tune dpo`` alike) and its QA checks
  (:mod:`~tunegate.checks.preference_qa`).
"""

from tunegate.checks.contamination import ContaminationReport, check_contamination
from tunegate.checks.preference_file import PreferencePair, PrefFile, PrefRow, load_preferences
from tunegate.checks.preference_qa import PrefReport, PrefThresholds, check_preferences

__all__ = ["ContaminationReport", "PrefFile", "PrefReport", "PrefRow", "PrefThresholds", "PreferencePair",
           "check_contamination", "check_preferences", "load_preferences"]
