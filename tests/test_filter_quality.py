"""The filter's acceptance figures on labelled stand-in footage (a smaller set than
bench/filter_quality.py): recall >= 0.95 per fault type at its documented threshold, and at most
2% of frames dropped on clean paths."""

from __future__ import annotations

import multiprocessing

import pytest

from filter.config import FilterConfig
from filter.evaluate import FAULTS, SetSpec, evaluate, make_labelled_set


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    spec = SetSpec(clean_per_scene=2, per_magnitude=1, frames=96, image_fault_rate=0.08, only_at_threshold=True, seed=7)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        labelled = make_labelled_set(tmp_path_factory.mktemp("labelled"), spec, pool.imap)
        return evaluate(labelled, FilterConfig(), pool.imap)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_recall_at_the_documented_threshold(figures, fault):
    _, summary = figures
    row = summary.set_index("fault").loc[fault]
    assert row["fault_frames"] >= 3, "the set should carry this fault"
    assert row["recall"] >= 0.95, f"{fault}: recall {row['recall']:.3f} over {row['fault_frames']} frames"


def test_clean_paths_lose_at_most_two_percent(figures):
    _, summary = figures
    row = summary.set_index("fault").loc["clean"]
    assert row["frames"] >= 700
    assert row["false_drop_rate"] <= 0.02
