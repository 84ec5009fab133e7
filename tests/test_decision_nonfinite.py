"""A NaN or infinite probability or threshold never becomes a decision (``NaN >= t`` would read NORMAL)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monai_pneumonia.decision import NonFiniteScoreError, class_name, decide, is_positive


@pytest.mark.parametrize("prob, threshold", [(math.nan, 0.5), (0.7, math.nan), (math.inf, 0.5), (0.2, -math.inf)])
def test_a_non_finite_score_or_threshold_is_refused(prob, threshold):
    for rule in (decide, class_name, is_positive):
        with pytest.raises(NonFiniteScoreError, match="non-finite"):
            rule(prob, threshold)


def test_arrays_are_refused_when_any_value_is_not_finite_and_decided_otherwise():
    assert is_positive(np.array([0.2, 0.5, 0.9], dtype=np.float32), 0.5).tolist() == [False, True, True]
    with pytest.raises(NonFiniteScoreError, match="1 non-finite"):
        is_positive(np.array([0.2, np.nan, 0.9]), 0.5)
    assert decide(0.5, 0.5) == 1 and class_name(0.49, 0.5) == "NORMAL"
    assert issubclass(NonFiniteScoreError, ValueError)
