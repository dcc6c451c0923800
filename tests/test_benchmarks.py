"""The cross-validation benchmark's folds and statistics (no audio: they run on labels and prediction tables)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ravdess_cv import FOLDS, high_tier_excess, within_training  # noqa: E402


def test_within_training_never_trains_or_scores_a_fold_s_test_actors():
    for folds in FOLDS.values():
        everyone = set().union(*folds)
        plan = within_training(folds)
        assert len(plan) == 3 * len(folds)
        for k, test_actors in enumerate(folds):
            runs = plan[3 * k:3 * k + 3]
            for actors, scored in runs:
                assert not actors & test_actors
                assert scored < actors and len(scored) == 4
            # each training actor of the fold is scored exactly once
            scored_all = [actor for _, scored in runs for actor in scored]
            assert sorted(scored_all) == sorted(everyone - test_actors)


def _predictions(wrong_of: dict, speakers: int = 6, clips: int = 10) -> pd.DataFrame:
    rows = []
    for recording, wrong in wrong_of.items():
        for s in range(speakers):
            for c in range(clips):
                missed = wrong(s, c)
                rows.append({"recording": recording, "mode": "per clip", "speaker": f"S{s}", "emotion": "happy",
                             "predicted": "sad" if missed else "happy", "tier": "high"})
    return pd.DataFrame(rows)


def test_high_tier_excess_is_the_difference_from_clean_speech_with_an_interval_over_speakers():
    always = _predictions({"clean": lambda s, c: False, "babble 10 dB": lambda s, c: True})
    row = high_tier_excess(always).iloc[0]
    assert (row["recording"], row["mode"], row["high_n"]) == ("babble 10 dB", "per clip", 60)
    assert row["excess"] == 1.0 and row["low"] == 1.0 and row["high"] == 1.0

    # Wrong as often as clean speech overall, but all of it in two voices: the interval spans zero and is wide.
    clustered = _predictions({"clean": lambda s, c: c < 3, "babble 10 dB": lambda s, c: s < 2 and c < 9})
    row = high_tier_excess(clustered).iloc[0]
    assert np.isclose(row["excess"], 0.0)
    assert row["low"] < -0.1 and row["high"] > 0.1
