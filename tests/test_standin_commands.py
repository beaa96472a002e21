"""The plugin's command set as existing client code sends it: the installed `unrealcv` 1.3.2 API
class (`unrealcv.api.UnrealCv_API`, which UnrealZoo's agents subclass), unmodified, against the
stand-in. Each method does what it does on UE: values read back, images change where an object
moved, `move_cam` stops at a wall, normals agree with the depth map, errors are UE's strings."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from unrealcv.api import UnrealCv_API

from annotate.ue import S, fov_to_intrinsics, ue_to_pose
from capture.standin.engine import EngineConfig
from capture.standin.server import StandinServer

W, H = 128, 96


@pytest.fixture
def api():
    with StandinServer(EngineConfig(scene="room-2", width=W, height=H, shadow_resolution=128)) as server:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The connected UnrealCV server is too old")
            client = UnrealCv_API(server.port, "127.0.0.1", (W, H))
        yield client, server.engine
        client.client.disconnect()


def _sync(client: UnrealCv_API) -> None:
    """The API sends object edits without waiting for the reply (`request(cmd, -1)`); a request that
    does wait is answered after them, as UE's game thread runs commands in order."""
    client.client.request("vget /unrealcv/version")


def _crate(engine) -> str:
    return next(n for n in engine.scene.names if n.startswith("crate"))


def _stage(client: UnrealCv_API, engine, name: str, distance_cm: float = 250.0) -> np.ndarray:
    """Camera 0 at its start, looking level along the freest of 16 headings; the object moved
    `distance_cm` ahead of it, resting on the floor. Returns the object's new location."""
    eye = np.array(client.get_cam_location(0))
    best = max(np.arange(16) * 22.5, key=lambda yaw: sum(
        bool(engine.scene.is_free(S @ (eye + d * np.array([np.cos(np.radians(yaw)), np.sin(np.radians(yaw)), 0]))
                                  / 100.0, 0.6)[0]) for d in np.linspace(50, distance_cm + 150, 12)))
    client.set_cam_rotation(0, [0.0, float(best), 0.0])  # the API's order: roll, yaw, pitch
    lo, hi = np.array(client.get_obj_bounds(name)[:3]), np.array(client.get_obj_bounds(name)[3:])
    heading = np.array([np.cos(np.radians(best)), np.sin(np.radians(best)), 0.0])
    target = eye + distance_cm * heading
    target[2] = (hi[2] - lo[2]) / 2 + 1.0  # standing on the floor (z = 0)
    client.set_obj_location(name, list(target))
    _sync(client)
    return target


def _pixels(image_bgr: np.ndarray, rgb) -> np.ndarray:
    return (image_bgr[..., ::-1] == np.asarray(rgb)).all(axis=-1)


def test_object_pose_scale_and_bounds_read_back(api):
    client, engine = api
    name = _crate(engine)
    x, y, z = client.get_obj_location(name)
    client.set_obj_location(name, [x + 50.0, y - 20.0, z + 10.0])
    client.set_obj_rotation(name, [5.0, 30.0, 0.0])  # the API's order: roll, yaw, pitch
    client.set_obj_scale(name, [2.0, 1.0, 0.5])
    _sync(client)
    pose = client.get_obj_pose(name)
    np.testing.assert_allclose(pose[:3], [x + 50.0, y - 20.0, z + 10.0], atol=1e-3)
    np.testing.assert_allclose(pose[3:], [0.0, 30.0, 5.0], atol=1e-3)  # the wire's order: pitch, yaw, roll
    assert client.get_obj_scale(name) == [2.0, 1.0, 0.5]
    lo, hi = np.array(client.get_obj_bounds(name)[:3]), np.array(client.get_obj_bounds(name)[3:])
    np.testing.assert_allclose((lo + hi) / 2, [x + 50.0, y - 20.0, z + 10.0], atol=0.01)
    assert (hi > lo).all()
    assert client.client.request("vget /object/nothing/rotation") == "error Can not find object"


def test_moving_an_object_moves_it_in_lit_depth_mask_and_normals(api):
    client, engine = api
    name = _crate(engine)
    x, y, z = _stage(client, engine, name)
    colour = engine.world.actors[name].color
    before = {mode: client.get_image(0, mode, "png") for mode in ("lit", "object_mask", "normal")}
    depth_before = np.squeeze(client.get_depth(0))
    yaw = np.radians(client.get_cam_rotation(0)[1])
    right = np.array([-np.sin(yaw), np.cos(yaw)])  # the camera's right in UE x, y
    client.set_obj_location(name, [x + 60.0 * right[0], y + 60.0 * right[1], z])
    _sync(client)
    after = {mode: client.get_image(0, mode, "png") for mode in ("lit", "object_mask", "normal")}
    for mode in before:
        assert not np.array_equal(before[mode], after[mode]), mode
    depth_after = np.squeeze(client.get_depth(0))
    assert not np.array_equal(depth_before, depth_after)
    cols_before = np.flatnonzero(_pixels(before["object_mask"], colour).any(axis=0))
    cols_after = np.flatnonzero(_pixels(after["object_mask"], colour).any(axis=0))
    assert len(cols_before) > 5 and len(cols_after) > 5
    assert cols_after.mean() > cols_before.mean() + 5  # it moved right in the image
    # where the object was and is no more, the depth grew (the floor or a wall behind it)
    left = _pixels(before["object_mask"], colour) & ~_pixels(after["object_mask"], colour)
    assert left.any() and (depth_after[left] > depth_before[left]).all()


def test_colour_hide_show_spawn_destroy(api):
    client, engine = api
    name = _crate(engine)
    target = _stage(client, engine, name, 300.0)
    client.set_obj_color(name, [10, 200, 30])
    _sync(client)
    assert _pixels(client.get_image(0, "object_mask", "png"), [10, 200, 30]).sum() > 30
    assert client.client.request(f"vget /object/{name}/color") == "(R=10,G=200,B=30,A=255)"
    client.set_hide_obj(name)
    _sync(client)
    assert not _pixels(client.get_image(0, "object_mask", "png"), [10, 200, 30]).any()
    assert name in client.get_objects()  # hidden, not gone
    assert not engine.scene.is_free(S @ target / 100.0, 0.05)[0]  # a hidden actor still collides, as in UE
    client.set_show_obj(name)
    _sync(client)
    assert _pixels(client.get_image(0, "object_mask", "png"), [10, 200, 30]).sum() > 30

    assert client.set_new_obj("Crate", "my_box") == "my_box"  # the API colours it at random
    assert client.client.request("vset /objects/spawn Crate my_box") == "error Failed to spawn my_box, object exsit."
    assert client.client.request("vset /objects/spawn NoSuchClass") == "error Can not find a class with name 'NoSuchClass'"
    assert "my_box" in client.get_objects()
    eye = np.array(client.get_cam_location(0))
    between = (eye + target) / 2  # between the camera and the crate
    client.set_obj_location("my_box", list(between))
    _sync(client)
    assert _pixels(client.get_image(0, "object_mask", "png"), client.obj_dict["my_box"]).sum() > 30
    assert not engine.scene.is_free(S @ between / 100.0, 0.05)[0]
    client.destroy_obj("my_box")
    _sync(client)
    assert "my_box" not in client.get_objects()
    assert engine.scene.is_free(S @ between / 100.0, 0.05)[0]
    assert client.client.request("vset /object/my_box/show") == "error Can not find object"


def test_rotating_an_object_turns_its_box(api):
    client, engine = api
    name = _crate(engine)
    x, y, z = client.get_obj_location(name)
    half = engine.world.actors[name].half_size()
    corner_probe = S @ np.array([x, y, z]) / 100.0 + np.array([half[0] * 0.98, half[1] * 0.98, 0.0])
    assert not engine.scene.is_free(corner_probe[None], 0.0)[0]  # inside the unrotated box, near its corner
    client.set_obj_rotation(name, [0.0, 45.0, 0.0])
    _sync(client)
    assert engine.scene.is_free(corner_probe[None], 0.0)[0]  # the turned box left its old corner
    lo, hi = np.array(client.get_obj_bounds(name)[:3]), np.array(client.get_obj_bounds(name)[3:])
    expected = (abs(np.cos(np.pi / 4)) * (half[0] + half[1])) * 100.0
    np.testing.assert_allclose((hi - lo)[:2] / 2, [expected, expected], atol=0.02)


def test_move_cam_stops_at_a_wall(api):
    client, engine = api
    start = np.array(client.get_cam_location(0))
    client.move_cam(0, [start[0] + 100_000.0, start[1], start[2]])  # far beyond the room's wall
    stopped = np.array(client.get_cam_location(0))
    assert start[0] < stopped[0] < start[0] + 100_000.0
    point = S @ stopped / 100.0
    assert engine.scene.is_free(point[None], 0.34)[0]  # the pawn's sphere stays clear
    wall_x = engine.scene.free_max[0] * 100.0  # the room's inner face along +X (UE x = internal x)
    assert abs((wall_x - stopped[0]) - 35.0) < 1.0 or not engine.scene.is_free(S @ (stopped + [2.0, 0, 0]) / 100.0, 0.35)
    assert client.client.request("vset /camera/1/moveto 0 0 0") == "error MoveTo only supports the player camera with id 0"
    client.set_cam_location(0, list(start))  # `location` teleports, no sweep
    np.testing.assert_allclose(client.get_cam_location(0), start, atol=1e-3)


def test_normals_agree_with_the_depth_map_on_flat_surfaces(api):
    client, engine = api
    client.set_cam_location(0, [0.0, 0.0, 170.0])
    client.set_cam_rotation(0, [-35.0, 20.0, 0.0])  # floor and a wall in view
    normal_bgr = client.get_image(0, "normal", "png")
    depth_cm = np.squeeze(client.get_depth(0))
    normals_ue = normal_bgr[..., ::-1].astype(np.float64) / 255.0 * 2.0 - 1.0
    # back-project the depth map to UE world points, and take their local plane's normal
    pose = ue_to_pose(np.array(client.get_cam_location(0)), np.array(client.get_cam_rotation(0)))
    k = fov_to_intrinsics(float(client.get_cam_fov(0)), W, H)
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
    points = (rays * (depth_cm / 100.0)[..., None]) @ pose[:3, :3].T + pose[:3, 3]  # internal metres
    du, dv = points[1:-1, 2:] - points[1:-1, :-2], points[2:, 1:-1] - points[:-2, 1:-1]
    geometric = np.cross(dv, du)
    geometric /= np.linalg.norm(geometric, axis=-1, keepdims=True)
    to_camera = pose[:3, 3] - points[1:-1, 1:-1]
    geometric *= np.sign((geometric * to_camera).sum(-1, keepdims=True))  # facing the camera
    reported = normals_ue[1:-1, 1:-1] @ S  # UE -> internal axes
    # flat pixels: the same normal as all 8 neighbours in the reported map (no edge, no corner)
    ids = engine._render(engine.cameras[0]).object_index
    flat = np.ones_like(ids, dtype=bool)[1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat &= ids[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx] == ids[1:-1, 1:-1]
            flat &= (normal_bgr[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx] == normal_bgr[1:-1, 1:-1]).all(-1)
    flat &= ids[1:-1, 1:-1] >= 0
    assert flat.sum() > 0.3 * flat.size
    angle = np.degrees(np.arccos(np.clip((geometric[flat] * reported[flat]).sum(-1), -1, 1)))
    # 8-bit encoding (~0.45 deg) and fp16 depth: within 2 degrees on 95 % of flat pixels
    assert np.percentile(angle, 95) < 2.0, np.percentile(angle, [50, 95, 99])


def test_normals_reproject_across_two_views(api):
    """A surface point seen from two cameras has one world normal: the normal maps of two views
    agree at pixels the depth maps say are the same point."""
    client, engine = api
    views = [([0.0, 0.0, 170.0], [-30.0, 10.0, 0.0]), ([40.0, -30.0, 180.0], [-32.0, 18.0, 0.0])]
    maps = []
    for location, rotation in views:
        client.set_cam_location(0, location)
        client.set_cam_rotation(0, rotation)
        maps.append((client.get_image(0, "normal", "png")[..., ::-1], np.squeeze(client.get_depth(0)),
                     ue_to_pose(np.array(location), np.array(rotation))))
    k = fov_to_intrinsics(90.0, W, H)
    (n0, d0, p0), (n1, d1, p1) = maps
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
    world = (rays * (d0 / 100.0)[..., None]) @ p0[:3, :3].T + p0[:3, 3]
    cam1 = (world - p1[:3, 3]) @ p1[:3, :3]
    z = cam1[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x1, y1 = k[0, 0] * cam1[..., 0] / z + k[0, 2], k[1, 1] * cam1[..., 1] / z + k[1, 2]
    inside = (z > 0.1) & (x1 >= 0) & (x1 < W) & (y1 >= 0) & (y1 < H) & (d0 < 60000)
    xi, yi = np.clip(x1.astype(int), 0, W - 1), np.clip(y1.astype(int), 0, H - 1)
    visible = inside & (np.abs(d1[yi, xi] / 100.0 - z) < 0.03)  # not occluded in view 1
    assert visible.sum() > 0.2 * visible.size
    agree = (np.abs(n0.astype(int) - n1[yi, xi].astype(int)) <= 2).all(-1)
    assert agree[visible].mean() > 0.97


def test_viewmode_screenshot_console_pause_and_help(api):
    client, engine = api
    req = client.client.request
    assert req("vget /viewmode") == "lit"
    assert req("vset /viewmode normal") == "ok" and req("vget /viewmode") == "normal"
    assert req("vset /viewmode nonsense") == "error Can not set ViewMode to nonsense"
    client.config_ue(resolution=(200, 150))  # `vrun setres 200x150w`, sent without waiting
    _sync(client)
    shot = client.decoder.decode_png(req("vget /screenshot png"))
    assert shot.shape[:2] == (150, 200)
    normal = client.get_image(0, "normal", "png")
    lit = client.get_image(0, "lit", "png")
    assert not np.array_equal(normal, lit)
    assert req("vrun t.maxFPS 24") == "ok" and engine.game.max_fps == 24.0
    client.set_global_time_dilation(0.5)
    client.set_max_FPS(30)
    _sync(client)
    assert engine.game.time_dilation == 0.5 and engine.game.max_fps == 30.0
    client.set_pause()
    assert client.get_is_paused() is True
    client.set_resume()
    assert client.get_is_paused() is False
    assert req("vset /action/eyes_distance 6.5") == "error Not Implemented"
    assert req("vrun some.UnknownCvar 3") == "ok"  # UE's console answers ok and logs the rest
    help_lines = req("vget /unrealcv/help").split("\n")
    templates = help_lines[0::2]
    assert "vset /object/[str]/location [float] [float] [float]" in templates
    assert "vset /camera/[uint]/moveto [float] [float] [float]" in templates
    assert req("vset /object/x/location 1e-05 0 0").startswith("error Can not find a handler")


def test_a_level_change_resets_the_edits(api):
    client, engine = api
    name = _crate(engine)
    client.set_obj_location(name, [0.0, 0.0, 5000.0])
    client.client.request("vset /objects/spawn CubeActor")
    _sync(client)
    level = engine.scene.name
    assert client.client.request(f"vrun open {level}") == "ok"
    assert "CubeActor_0" not in client.get_objects()
    assert client.get_obj_location(name)[2] < 5000.0


def test_a_frame_rate_cap_makes_each_round_trip_wait_for_a_tick(api):
    client, engine = api
    req = client.client.request
    start = time.perf_counter()
    for _ in range(6):
        req("vget /unrealcv/version")
    uncapped = time.perf_counter() - start
    assert req("vrun t.maxFPS 20") == "ok"
    start = time.perf_counter()
    for _ in range(6):  # each waits for its reply: six ticks at 20 per second
        req("vget /unrealcv/version")
    capped = time.perf_counter() - start
    start = time.perf_counter()
    req(["vget /unrealcv/version"] * 6)  # sent together: one tick
    batch = time.perf_counter() - start
    assert uncapped < 0.15 and 0.24 < capped < 1.0 and batch < 0.12, (uncapped, capped, batch)
    req("vrun t.maxFPS 0")  # 0: no cap
    start = time.perf_counter()
    for _ in range(6):
        req("vget /unrealcv/version")
    assert time.perf_counter() - start < 0.15
