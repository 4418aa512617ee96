"""Results of runs: gathering them once, leaderboards, run comparison, reports, predictions.

Every view (terminal summary, ``automl leaderboard``, ``automl compare``, ``automl report``)
reads a :class:`RunResults` from :func:`gather`.
"""

from automl.results._gather import RowState, RunResults, TrialRow, gather, open_study
from automl.results.leaderboard import Leaderboard, leaderboard

__all__ = ["Leaderboard", "RowState", "RunResults", "TrialRow", "gather", "leaderboard", "open_study"]
