"""RELIC's data recipe as options: the palindrome's sampled turning point, scale-free translation
bins (clip_mean), captions per 5 s segment, and the planner honouring the normalisation."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotate.actions import CHANNELS, ActionSpec, BinSpec, decode_actions, encode_actions, translation_scale
from annotate.geometry import integrate, relative_motion
from annotate.readers import ReaderConfig, read_ue_csv
from annotate.ue import location_to_ue, ue_to_pose
from augment.clips import PalindromeConfig, WindowConfig, clip_labels, palindrome_frames, palindrome_times
from augment.make import ClipConfig, ClipJob, make_clips
from capture.captions import (CaptionConfig, SegmentCaption, clip_captions, describe, object_label, parse_captions,
                              segment_frames, trajectory_captions)
from capture.planner import PlannerConfig, plan_jobs, plan_path
from capture.standin.footage import render_footage
from capture.standin.render import Renderer
from capture.standin.scene import make_scene
from common.config import ConfigError, from_dict

SCALED = ActionSpec(translation=BinSpec(dead_zone=0.05, edges=(0.75, 1.5), centers=(0.4, 1.0, 2.0), normalize="clip_mean"))
T = CHANNELS.index


# -- palindrome turning point ----------------------------------------------------------------------
def test_partial_palindrome_frames_and_times():
    frames, turn = palindrome_frames(np.array([5, 7, 9, 11, 13]), 7)
    assert frames.tolist() == [5, 7, 9, 11, 13, 11, 9] and turn == 4
    np.testing.assert_allclose(palindrome_times(np.array([0.0, 0.1, 0.3, 0.35, 0.4]), 7),
                               [0, 0.1, 0.3, 0.35, 0.4, 0.45, 0.5])
    assert palindrome_frames(np.arange(4))[0].tolist() == [0, 1, 2, 3, 2, 1, 0]  # default: all the way back
    with pytest.raises(ValueError, match="turning at frame 4 has 6..9 frames, asked 10"):
        palindrome_frames(np.arange(5), 10)


def test_turns_are_drawn_uniformly_from_the_second_half():
    rng = np.random.default_rng(0)
    turns = PalindromeConfig(turn="uniform_second_half").turns(33, 20000, rng)
    assert turns.min() == 16 and turns.max() == 31  # ceil((T-1)/2) .. T-2: at least one frame back
    counts = np.bincount(turns)[16:]
    assert np.abs(counts / counts.mean() - 1).max() < 0.1
    assert PalindromeConfig(turn="uniform_second_half").turns(8, 500, rng).min() == 4  # even T works too
    assert set(PalindromeConfig().turns(33, 50, rng)) == {16}
    with pytest.raises(ValueError, match="must be odd"):
        PalindromeConfig().turns(32, 1, rng)
    with pytest.raises(ValueError, match="palindrome.turn must be one of"):
        PalindromeConfig(turn="random")


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 25), st.floats(0.3, 2.0), st.floats(10.0, 90.0), st.integers(0, 10_000))
def test_a_sampled_turn_recomputes_actions_from_its_own_poses(frames, speed, yaw_rate, seed):
    """Forward while turning right, to a turn drawn in the second half, then back: the return leg's
    labels are those of the reversed poses, not the forward ones reversed and negated."""
    fps = 30.0
    motion = np.tile([0.0, 0.0, speed / fps, yaw_rate / fps, 0.0, 0.0], (frames - 1, 1))
    poses = integrate(ue_to_pose(np.zeros(3), np.zeros(3)), motion)
    times = np.arange(frames) / fps
    turn = int(PalindromeConfig(turn="uniform_second_half").turns(frames, 1, np.random.default_rng(seed))[0])
    order, got_turn = palindrome_frames(np.arange(turn + 1), frames)
    assert got_turn == turn and len(order) == frames and order[turn] == turn
    pal_motion, pal_actions, _ = clip_labels(poses[order], palindrome_times(times[:turn + 1], frames), ActionSpec())
    back = pal_motion[turn:]
    np.testing.assert_allclose(back, relative_motion(poses[turn::-1])[:frames - 1 - turn], atol=1e-9)
    naive = -relative_motion(poses[:turn + 1])[::-1][:frames - 1 - turn]
    assert np.abs(back[:, 0] - naive[:, 0]).max() > 1e-4 * speed  # reversing + negating gets dx wrong
    assert (pal_actions[:turn, T("forward")] > 0).all() and (pal_actions[turn:, T("backward")] > 0).all()
    assert (pal_actions[turn:, T("yaw_left")] > 0).all()


# -- scale-free translation bins -------------------------------------------------------------------
def test_translation_scale_known_answer():
    motion = np.zeros((4, 6))
    motion[:, 2] = [0.0, 0.001, 0.05, 0.15]  # m per frame at 10 fps: 0, 0.01, 0.5, 1.5 m/s
    assert translation_scale(motion, 0.1, SCALED) == pytest.approx(1.0)  # 0.01 m/s is not moving
    assert translation_scale(motion, 0.1, ActionSpec()) is None
    assert translation_scale(np.zeros((3, 6)), 0.1, SCALED) is None


# metres per frame: zero or at least a nanometre (below ~1e-154 m, squaring in the norm loses precision
# to subnormals, and such a motion is nothing a capture records)
METRES = st.floats(-3, 3).map(lambda v: v if abs(v) >= 1e-9 else 0.0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(METRES, METRES, METRES, st.floats(-60, 60)), min_size=2, max_size=30), st.floats(0.05, 50.0))
def test_clip_mean_bins_do_not_depend_on_the_scene_scale(rows, factor):
    """The same camera path in a scene `factor` times larger gets the same actions; the stored scale
    grows by `factor` and decoding with it gives metric motion that re-encodes to the same actions."""
    spec = ActionSpec(translation=BinSpec(**{**SCALED.translation.__dict__, "moving_speed": 0.0}))
    motion = np.array([[x, y, z, yaw, 0.0, 0.0] for x, y, z, yaw in rows]) / 30.0
    big = motion.copy()
    big[:, :3] *= factor
    scale, big_scale = translation_scale(motion, 1 / 30, spec), translation_scale(big, 1 / 30, spec)
    actions = encode_actions(motion, 1 / 30, spec)
    if scale is None:
        assert big_scale is None and not actions[:, :6].any()
        return
    assert big_scale == pytest.approx(factor * scale, rel=1e-9)
    np.testing.assert_array_equal(encode_actions(big, 1 / 30, spec), actions)
    decoded = decode_actions(actions, 1 / 30, spec, big_scale)
    np.testing.assert_array_equal(encode_actions(decoded, 1 / 30, spec, big_scale), actions)
    np.testing.assert_allclose(decoded[:, :3], factor * decode_actions(actions, 1 / 30, spec, scale)[:, :3], rtol=1e-9)


def test_clip_mean_decodes_to_metric_motion_known_answer():
    """1 m/s forward in one scene, 10 m/s in a ten times larger one: both 'forward at the clip's mean
    speed' (level 2 of 3, centre 1.0), decoded with each clip's scale to 1 and 10 m/s."""
    for speed in (1.0, 10.0):
        motion = np.tile([0.0, 0.0, speed / 30, 0.0, 0.0, 0.0], (5, 1))
        scale = translation_scale(motion, 1 / 30, SCALED)
        actions = encode_actions(motion, 1 / 30, SCALED, scale)
        np.testing.assert_allclose(actions[:, T("forward")], 2 / 3)
        np.testing.assert_allclose(decode_actions(actions, 1 / 30, SCALED, scale), motion, rtol=1e-12)
    with pytest.raises(ValueError, match="needs the sample's translation_scale"):
        decode_actions(actions, 1 / 30, SCALED)
    with pytest.raises(ValueError, match="translation.normalize is 'none'"):
        encode_actions(motion, 1 / 30, ActionSpec(), 1.0)
    rotation_only = encode_actions(np.tile([0, 0, 0, 1.0, 0, 0], (3, 1)), 1 / 30, SCALED)
    assert decode_actions(rotation_only, 1 / 30, SCALED)[:, 3] == pytest.approx(30 / 30)  # no scale needed


def test_normalisation_is_configured_and_checked():
    spec = from_dict(ActionSpec, {"translation": {"dead_zone": 0.05, "edges": [0.75, 1.5], "centers": [0.4, 1.0, 2.0],
                                                  "normalize": "clip_mean"}}, source="test")
    assert spec.scaled and "translation_scale" in spec.to_metadata()["units"]["translation"]
    with pytest.raises((ConfigError, ValueError), match="normalize must be one of"):
        BinSpec(0.05, (0.75,), (0.4, 1.0), normalize="max")
    with pytest.raises(ValueError, match="rotations are not normalised"):
        ActionSpec(rotation=BinSpec(2.0, (15.0, 45.0), (8.0, 30.0, 75.0), normalize="clip_mean"))


def test_the_planner_draws_and_counts_translations_as_multiples_of_the_clip_speed():
    """With clip_mean bins the planner draws translation rates as bin multiples of
    `reference_speed`, and still balances the channels as the annotator labels them."""
    scene = make_scene("courtyard-3")
    for reference in (0.5, 1.5):
        config = PlannerConfig(frames=900, reference_speed=reference, revisit_probability=0.0)
        counts = np.zeros(len(CHANNELS))
        path = plan_path(scene, config, SCALED, 7, counts)
        lo, hi = SCALED.translation.dead_zone * reference, SCALED.translation.centers[-1] * 1.2 * reference
        translated = [abs(v) for s in path.segments for v in s["rates"][:3] if v]
        assert translated and lo <= min(translated) and max(translated) <= hi, (reference, min(translated), max(translated))
        assert max(translated) > SCALED.translation.edges[-1] * reference  # the top level is drawn too
    jobs = plan_jobs(PlannerConfig(scenes=("room-1", "corridor-2", "courtyard-3", "street-4"), trajectories_per_scene=3,
                                   frames=600), SCALED)
    counts = np.zeros(len(CHANNELS))
    for job in jobs:  # labelled as the build labels them: 33-frame clips, each with its own scale
        motion = relative_motion(ue_to_pose(job.locations, job.rotations))
        for start in range(0, len(motion) - 32, 16):
            counts += (encode_actions(motion[start:start + 32], 1 / 30, SCALED) > 0).sum(axis=0)
    shares = counts / counts.sum()
    assert np.abs(shares - 1 / len(CHANNELS)).max() < 0.035, dict(zip(CHANNELS, shares.round(3)))


# -- captions --------------------------------------------------------------------------------------
def test_object_labels_from_names():
    assert object_label("crate_007") == "crate"
    assert object_label("SM_StreetLamp3") == "street lamp"
    assert object_label("BP_Car_12") == "car"
    assert object_label("___") == "object"


def test_segments_of_five_seconds():
    segments = segment_frames(np.arange(360) / 30.0 + 7.0, 5.0)
    assert [(a, b, len(f)) for a, b, f in segments] == [(0.0, 5.0, 150), (5.0, 10.0, 150), (10.0, 15.0, 60)]


def _looking_at(scene, name: str, distance: float = 1.2) -> np.ndarray:
    """A camera pose `distance` m in front of object `name`'s -x face, looking at its centre."""
    i = scene.names.index(name)
    centre = (scene.box_min[i] + scene.box_max[i]) / 2
    eye = centre - np.array([(scene.box_max[i, 0] - scene.box_min[i, 0]) / 2 + distance, 0.0, 0.0])
    return ue_to_pose(location_to_ue(eye), np.zeros(3))  # yaw 0: looking along +x


def test_a_view_of_a_crate_is_described_with_its_material():
    scene = make_scene("room-1")
    name = next(n for n, m in zip(scene.names, scene.material) if n.startswith("crate"))
    pose = _looking_at(scene, name, 0.4)
    index = Renderer(scene, shadow_resolution=4).object_index(pose, 64, 36, 90.0)[None]
    text, objects = describe(scene, index, CaptionConfig())
    assert text.startswith("A room (room_0001). In view: ")
    top = objects[0]
    assert top["label"] == "crate" and top["share"] > 0.3, objects
    material = {"wood": "wooden", "metal": "metal", "paint": "painted"}[top["material"]]
    assert f"{material} crate" in text


def test_ingest_captions_are_validated_naming_the_file_and_entry():
    good = parse_captions([{"start_s": 0, "end_s": 5, "text": "a"}, {"start_s": 5, "end_s": 10, "text": "b"}], "m.json")
    assert [(c.segment, c.text, c.source) for c in good] == [(0, "a", "ingest"), (1, "b", "ingest")]
    for raw, message in (("x", "expected a list"), ([{"start_s": 0, "end_s": 5}], r"captions\[0\]: expected exactly"),
                         ([{"start_s": 3, "end_s": 1, "text": "a"}], r"captions\[0\]: needs 0 <= start_s < end_s"),
                         ([{"start_s": 0, "end_s": 5, "text": 5}], "text must be a string"),
                         ([{"start_s": 0, "end_s": 5, "text": "a"}, {"start_s": 4, "end_s": 8, "text": "b"}],
                          r"captions\[1\] starts at 4 s, before captions\[0\] ends"),
                         ([{"start_s": True, "end_s": 5, "text": "a"}], "finite numbers")):
        with pytest.raises(ValueError, match=f"m.json: .*{message}"):
            parse_captions(raw, "m.json")


def test_a_clip_carries_the_captions_its_frames_span():
    caps = [SegmentCaption(k, 5.0 * k, 5.0 * (k + 1), f"s{k}", "trajectory") for k in range(3)]
    assert [c["text"] for c in clip_captions(caps, 1.0, 2.0)] == ["s0"]
    assert [c["text"] for c in clip_captions(caps, 4.5, 5.5)] == ["s0", "s1"]
    assert [c["text"] for c in clip_captions(caps, 10.0, 12.0)] == ["s2"]
    meta = {"caption": "a walk", "fov": 90}
    times = np.arange(240) / 30.0
    got = trajectory_captions(meta, np.tile(np.eye(4), (240, 1, 1)), times, CaptionConfig(), "m.json")
    assert [(c.start_s, c.text, c.source) for c in got] == [(0.0, "a walk", "trajectory"), (5.0, "a walk", "trajectory")]
    assert trajectory_captions({"fov": 90}, np.tile(np.eye(4), (3, 1, 1)), times[:3], CaptionConfig(), "m.json") == []


@pytest.fixture(scope="module")
def staged_walk(tmp_path_factory) -> pathlib.Path:
    """12 s of a walk in room-1 at 15 fps, rendered by the stand-in (its captions in meta.json)."""
    scene = make_scene("room-1")
    start = scene.sample_free(np.random.default_rng(1), 1, radius=0.5, height=1.6)[0]
    motion = np.tile([0.0, 0.0, 0.01, 1.5, 0.0, 0.0], (179, 1))  # slow forward while turning: stays in the room
    poses = integrate(ue_to_pose(location_to_ue(start), np.zeros(3)), motion)
    folder, _ = render_footage("room-1", poses, np.arange(180) / 15.0, tmp_path_factory.mktemp("walk"), "walk", 48, 32)
    return folder


def _clips(folder: pathlib.Path, config: ClipConfig, spec: ActionSpec = ActionSpec()) -> list:
    traj = read_ue_csv(folder / "poses.csv", ReaderConfig())
    job = ClipJob(folder, "room_0001", "walk", "train", ((0, len(traj.poses)),), {}, 11, traj)
    return make_clips(job, config, spec)


def test_clips_with_the_relic_knobs(staged_walk):
    """Sampled turns, clip_mean bins and per-segment captions, through the build's clip maker."""
    meta = json.loads((staged_walk / "meta.json").read_text())
    assert [c["start_s"] for c in meta["captions"]] == [0.0, 5.0, 10.0]
    assert all(c["text"].startswith("A room (room_0001). In view: ") for c in meta["captions"])
    config = ClipConfig(window=WindowConfig(frames=17, stride=8),
                        palindrome=PalindromeConfig(share=1.0, turn="uniform_second_half"))
    clips = _clips(staged_walk, config, SCALED)
    pals = [c for c in clips if c.meta["palindrome"]]
    turns = {c.meta["turn_index"] for c in pals}
    assert len(turns) > 3 and min(turns) >= 8 and max(turns) <= 15, turns
    for clip in clips:
        source = np.array(clip.meta["source_frames"])
        assert len(source) == 17
        if clip.meta["palindrome"]:
            t = clip.meta["turn_index"]
            assert (source[t + 1:] == source[t - 1::-1][:16 - t]).all()
        times = source / 15.0
        covered = [c["segment"] for c in clip.meta["captions"]]
        assert covered == sorted({int(np.floor(times.min() / 5 + 1e-9)), int(np.floor(times.max() / 5 + 1e-9))})
        scale = clip.meta["translation_scale"]
        assert scale == pytest.approx(0.15, rel=1e-4)  # 1 cm a frame at 15 fps, whichever way (UE poses: 0.1 mm)
        np.testing.assert_array_equal(clip.actions, encode_actions(clip.motion, 1 / 15, SCALED, scale))
    assert any(len(c.meta["captions"]) == 2 for c in clips)  # a clip across a segment boundary has both
    middle = _clips(staged_walk, ClipConfig(window=WindowConfig(frames=17, stride=8), palindrome=PalindromeConfig(share=1.0)))
    assert {c.meta["turn_index"] for c in middle if c.meta["palindrome"]} == {8}  # the default is unchanged
