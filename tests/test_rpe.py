"""training.eval.rpe: Umeyama's similarity transform and the relative pose error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.spatial.transform import Rotation

from annotate.geometry import integrate, make_pose
from training.eval.rpe import align_sim3, path_rpe, relative_pose_error, umeyama

seeds = st.integers(0, 2**31 - 1)


def _random_path(rng: np.random.Generator, steps: int = 12) -> np.ndarray:
    motion = np.column_stack([rng.normal(0, 0.1, (steps, 3)), rng.normal(0, 3.0, (steps, 3))])
    return integrate(make_pose(Rotation.random(random_state=rng).as_matrix(), rng.normal(0, 2, 3)), motion)


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_umeyama_recovers_a_known_similarity(seed):
    rng = np.random.default_rng(seed)
    src = rng.normal(0, 1, (20, 3))
    s, rot, t = rng.uniform(0.1, 10), Rotation.random(random_state=rng).as_matrix(), rng.normal(0, 5, 3)
    dst = s * src @ rot.T + t
    s2, rot2, t2 = umeyama(src, dst)
    assert s2 == pytest.approx(s, rel=1e-9)
    assert np.allclose(rot2, rot, atol=1e-9) and np.allclose(t2, t, atol=1e-7)
    assert np.linalg.det(rot2) == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(seeds)
def test_rpe_is_zero_for_a_similar_copy_and_blind_to_the_copys_frame(seed):
    rng = np.random.default_rng(seed)
    reference = _random_path(rng)
    s, rot, t = rng.uniform(0.05, 20), Rotation.random(random_state=rng).as_matrix(), rng.normal(0, 5, 3)
    moved = make_pose(np.einsum("ij,njk->nik", rot, reference[:, :3, :3]), s * reference[:, :3, 3] @ rot.T + t)
    result = path_rpe(moved, reference)
    assert result["rpe_t"] < 1e-8 and result["rpe_r"] < 1e-5
    assert result["scale"] == pytest.approx(1 / s, rel=1e-8)
    aligned, _ = align_sim3(moved, reference)
    assert np.allclose(aligned, reference, atol=1e-8)


def test_a_still_estimate_scores_the_commanded_motion():
    # 8 steps of 0.1 m forward with a 2 degree yaw: an estimate that never moves scores exactly that
    reference = integrate(np.eye(4), np.tile([0.0, 0.0, 0.1, 2.0, 0.0, 0.0], (8, 1)))
    still = np.repeat(reference[:1], 9, axis=0)
    result = path_rpe(still, reference)
    assert result["rpe_t"] == pytest.approx(0.1, abs=1e-12)
    assert result["rpe_r"] == pytest.approx(2.0, abs=1e-9)
    assert result["scale"] == 0.0


def test_rpe_known_answer_for_a_constant_rotation_error():
    reference = integrate(np.eye(4), np.tile([0.0, 0.0, 0.0, 2.0, 0.0, 0.0], (6, 1)))  # turning on the spot
    estimate = integrate(np.eye(4), np.tile([0.0, 0.0, 0.0, 2.5, 0.0, 0.0], (6, 1)))
    trans, rot = relative_pose_error(estimate, reference)
    assert np.allclose(trans, 0.0) and np.allclose(rot, 0.5)
    with pytest.raises(ValueError, match="differ"):
        relative_pose_error(estimate[:3], reference)
