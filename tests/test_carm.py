"""C-arm angles against the worked check of CONVENTIONS.md, round trips, views, limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fluoroplan.geometry.carm import (
    CArmPose,
    angles_from_detector_dir,
    angulation_end,
    bullseye_pose,
    check_reachable,
    describe_angles,
    detector_dir_from_angles,
    lateral_view,
    patient_angles_from_table,
    progression_pose,
    rotation_side,
    signed,
    table_angles_from_patient,
    table_from_lps,
    tilt_words,
    working_view,
    wrap180,
)
from fluoroplan.geometry.conventions import CArmLimits
from fluoroplan.io.plan_json import pose_from_json, pose_json

S15, C15, S10, C10 = (math.sin(math.radians(a)) for a in (15, 75, 10, 80))
WORKED_N = np.array([S15 * C10, -C15 * C10, S10])  # right needle, 15 medial, 10 cranial
WORKED_TEXT = (
    "detector over the patient's back, tilted 15 deg toward the patient's RIGHT "
    "and 10 deg toward the FEET"
)


def angle_diff(a: float, b: float) -> float:
    return abs(wrap180(a - b))


# --- the worked check -----------------------------------------------------------------------
def test_worked_check_hfp():
    target = np.array([10.0, 20.0, 30.0])
    entry = target - 80.0 * WORKED_N
    pose = bullseye_pose(entry, target, "HFP")
    np.testing.assert_allclose(pose.detector_dir_lps, -WORKED_N, atol=1e-12)
    assert pose.primary_deg == pytest.approx(-165.0, abs=1e-9)
    assert pose.secondary_deg == pytest.approx(-10.0, abs=1e-9)
    tp, ts = pose.table_angles_deg
    assert tp == pytest.approx(15.0, abs=1e-9)
    assert ts == pytest.approx(-10.0, abs=1e-9)
    assert pose.text == WORKED_TEXT
    assert "CAU 10" in pose.dicom_text


def test_worked_check_json_block():
    pose = CArmPose(-165.0, -10.0, "HFP")
    block = pose_json(pose)
    assert set(block) == {
        "detector_dir_lps",
        "primary_deg",
        "secondary_deg",
        "table_primary_deg",
        "table_secondary_deg",
        "text",
    }
    np.testing.assert_allclose(block["detector_dir_lps"], -WORKED_N, atol=1e-6)
    assert (block["primary_deg"], block["secondary_deg"]) == (-165.0, -10.0)
    assert (block["table_primary_deg"], block["table_secondary_deg"]) == (15.0, -10.0)
    assert block["text"] == WORKED_TEXT
    back = pose_from_json(block, "HFP")
    assert (back.primary_deg, back.secondary_deg) == (-165.0, -10.0)


# --- definitions ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p, s, d",
    [
        (0, 0, (0, -1, 0)),  # in front of the chest
        (90, 0, (1, 0, 0)),  # patient's left (LAO)
        (-90, 0, (-1, 0, 0)),  # patient's right (RAO)
        (180, 0, (0, 1, 0)),  # behind the back
        (0, 90, (0, 0, 1)),  # cranial
        (0, -90, (0, 0, -1)),  # caudal
    ],
)
def test_cardinal_directions(p, s, d):
    np.testing.assert_allclose(detector_dir_from_angles(p, s), d, atol=1e-12)


def test_wrap180():
    assert wrap180(180) == 180
    assert wrap180(-180) == 180
    assert wrap180(190) == -170
    assert wrap180(-190) == 170
    assert wrap180(540) == 180
    assert wrap180(-15) == -15


def sphere_dirs(n: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(7)
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    # add the awkward ones: exactly behind (prone PA, the +-180 wrap) and near it
    extra = [(0, 1, 0), (1e-9, 1, 0), (-1e-9, 1, 0), (0, 1, 0.3), (1, 0, 0), (-1, 0, 0)]
    extra = np.array(extra, float)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.vstack([v, extra])


def test_direction_round_trip_whole_sphere():
    for d in sphere_dirs():
        p, s = angles_from_detector_dir(d)
        assert -180.0 < p <= 180.0 and -90.0 <= s <= 90.0
        np.testing.assert_allclose(detector_dir_from_angles(p, s), d, atol=1e-12)


def test_angle_round_trip_grid():
    for p in np.arange(-180.0, 180.1, 7.5):
        for s in np.arange(-87.5, 88.0, 12.5):
            p2, s2 = angles_from_detector_dir(detector_dir_from_angles(p, s))
            assert angle_diff(p2, p) < 1e-9 and s2 == pytest.approx(s, abs=1e-9)


@pytest.mark.parametrize("position", ["HFS", "HFP", "FFS", "FFP"])
def test_table_round_trip_whole_sphere(position):
    for d in sphere_dirs(500):
        p, s = angles_from_detector_dir(d)
        tp, ts = table_angles_from_patient(p, s, position)
        assert -180.0 < tp <= 180.0
        p2, s2 = patient_angles_from_table(tp, ts, position)
        np.testing.assert_allclose(detector_dir_from_angles(p2, s2), d, atol=1e-12)
        # the table angles describe the same detector in table axes
        np.testing.assert_allclose(
            detector_dir_from_angles(tp, ts), table_from_lps(position) @ d, atol=1e-12
        )


@pytest.mark.parametrize(
    "position, expect",
    [
        ("HFS", lambda p, s: (p, s)),
        ("HFP", lambda p, s: (p + 180.0, s)),
        ("FFS", lambda p, s: (-p, -s)),
        ("FFP", lambda p, s: (180.0 - p, -s)),
    ],
)
def test_table_angle_closed_forms(position, expect):
    for p in np.arange(-180.0, 180.1, 15.0):
        for s in (-40.0, -10.0, 0.0, 25.0, 60.0):
            tp, ts = table_angles_from_patient(p, s, position)
            ep, es = expect(p, s)
            assert angle_diff(tp, ep) < 1e-9, (p, s, tp, ep)
            assert ts == pytest.approx(es, abs=1e-9)


def test_prone_wrap_is_continuous():
    """Across the +-180 seam of a prone PA view the table angle stays near 0."""
    for p in (179.0, 180.0, -180.0, -179.0):
        tp, _ = table_angles_from_patient(p, 0.0, "HFP")
        assert abs(tp) <= 1.0 + 1e-9
    assert CArmPose(-180.0, 0.0, "HFP").primary_deg == 180.0


def test_table_axes_are_physical():
    # prone: patient's back (+P) faces the ceiling (-Yt); patient's left is table right
    m = table_from_lps("HFP")
    np.testing.assert_allclose(m @ [0, 1, 0], [0, -1, 0])
    np.testing.assert_allclose(m @ [1, 0, 0], [-1, 0, 0])
    # feet first: the head is toward the table foot
    np.testing.assert_allclose(table_from_lps("FFS") @ [0, 0, 1], [0, 0, -1])
    with pytest.raises(ValueError, match="patient position"):
        table_from_lps("LFD")


# --- words ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p, s, position, text",
    [
        (0, 0, "HFS", "detector over the patient's chest"),
        (180, 0, "HFS", "detector under the patient's back"),
        (180, 0, "HFP", "detector over the patient's back"),
        (0, 0, "FFP", "detector under the patient's chest"),
        (
            170,
            5,
            "HFP",
            "detector over the patient's back, tilted 10 deg toward the patient's "
            "LEFT and 5 deg toward the HEAD",
        ),
        (
            20,
            -12.5,
            "HFS",
            "detector over the patient's chest, tilted 20 deg toward the "
            "patient's LEFT and 12.5 deg toward the FEET",
        ),
        (
            -30,
            0,
            "FFS",
            "detector over the patient's chest, tilted 30 deg toward the patient's RIGHT",
        ),
        (90, 0, "HFP", "detector beside the patient's LEFT side"),
        (
            100,
            0,
            "HFP",
            "detector beside the patient's LEFT side, tilted 10 deg toward the patient's back (up)",
        ),
        (
            -80,
            0,
            "HFP",
            "detector beside the patient's RIGHT side, tilted 10 deg toward the "
            "patient's chest (down)",
        ),
        (
            -100,
            20,
            "HFS",
            "detector beside the patient's RIGHT side, tilted 10 deg toward the "
            "patient's back (down) and 20 deg toward the HEAD",
        ),
        (0, 90, "HFS", "detector beyond the patient's HEAD, beam along the body axis"),
    ],
)
def test_sentences(p, s, position, text):
    assert describe_angles(p, s, position) == text


def test_sentence_never_bare_lao_rao():
    for p in range(-180, 181, 10):
        for position in ("HFS", "HFP", "FFS", "FFP"):
            t = describe_angles(p, 5, position)
            assert "LAO" not in t and "RAO" not in t
            assert "patient's" in t


def test_sentence_names_the_side_the_detector_is_on():
    """The side named first is the one the detector direction points to most."""
    for d in sphere_dirs(300):
        if abs(d[2]) > 0.99:
            continue
        p, s = angles_from_detector_dir(d)
        t = describe_angles(p, s, "HFP")
        k = int(np.argmax(np.abs(d[:2])))
        word = ("LEFT" if d[0] > 0 else "RIGHT") if k == 0 else ("back" if d[1] > 0 else "chest")
        if abs(abs(d[0]) - abs(d[1])) > 1e-6:
            assert word in t.split(",")[0], (d, t)


# --- views ----------------------------------------------------------------------------------
def test_bullseye_of_screw_points_detector_out_of_the_head():
    head, tip = np.array([-30.0, 60.0, 0.0]), np.array([-20.0, 20.0, 5.0])
    pose = bullseye_pose(head, tip, "HFP")
    axis = (tip - head) / np.linalg.norm(tip - head)
    assert pose.detector_dir_lps @ axis == pytest.approx(-1.0)


def test_working_view_from_screw_bullseye():
    target = np.array([0.0, 0.0, 0.0])
    screw_head, screw_tip = np.array([-25.0, 70.0, 0.0]), np.array([-12.0, 25.0, 0.0])
    ref = bullseye_pose(screw_head, screw_tip, "HFP", sid_mm=1000.0)
    # needle: a little more lateral (entry further right) and from below (cranial course)
    entry = np.array([-40.0, 70.0, -15.0])
    wv = working_view(entry, target, ref)
    assert wv.pose.sid_mm == 1000.0 and wv.pose.patient_position == "HFP"
    np.testing.assert_allclose(
        wv.pose.detector_dir_lps, (entry - target) / np.linalg.norm(entry - target)
    )
    assert wv.d_primary_deg == pytest.approx(
        wrap180(wv.pose.primary_deg - ref.primary_deg), abs=1e-9
    )
    assert ref.with_angles(
        ref.primary_deg + wv.d_primary_deg, ref.secondary_deg + wv.d_secondary_deg
    ).detector_dir_lps == pytest.approx(wv.pose.detector_dir_lps)
    # HFP: table deltas equal patient deltas
    assert wv.d_table_primary_deg == pytest.approx(wv.d_primary_deg, abs=1e-9)
    assert wv.d_table_secondary_deg == pytest.approx(wv.d_secondary_deg, abs=1e-9)
    # the detector moves further to the patient's right and toward the feet
    assert wv.d_secondary_deg < 0
    assert "RIGHT" in wv.text and "FEET" in wv.text
    assert 0 < wv.angle_between_deg < 30


def test_progression_view_is_perpendicular_and_lateral():
    target = np.array([0.0, 0.0, 0.0])
    entry = target - 90.0 * WORKED_N  # right-sided entry
    pose = progression_pose(entry, target, "HFP")
    d = pose.detector_dir_lps
    assert abs(d @ WORKED_N) < 1e-12
    assert d[0] < -0.9  # detector at the patient's right, close to a true lateral
    # closest: any other perpendicular direction is further from the lateral
    other = np.cross(WORKED_N, d)
    for t in np.radians([-20, -5, 5, 20]):
        alt = math.cos(t) * d + math.sin(t) * other
        assert alt @ [-1, 0, 0] < d @ [-1, 0, 0]
    assert "RIGHT side" in pose.text


def test_progression_view_toward_named_direction_and_vertebra_axis():
    target, entry = np.zeros(3), np.array([-20.0, 80.0, 0.0])
    pose = progression_pose(entry, target, "HFP", toward_lps=[1.0, 0.0, 0.0])
    assert pose.detector_dir_lps[0] > 0.9
    rot = np.radians(-20)  # a rotated vertebra: its lateral axis turned in the axial plane
    lat = np.array([math.cos(rot), math.sin(rot), 0.0])
    pose2 = progression_pose(entry, target, "HFP", lateral_lps=lat)
    n = (target - entry) / np.linalg.norm(target - entry)
    d2 = pose2.detector_dir_lps
    assert abs(d2 @ n) < 1e-12
    # the entry is on the -lat side; the closest perpendicular direction reaches cos = |w_perp|
    assert d2 @ (-lat) == pytest.approx(math.sqrt(1.0 - (lat @ n) ** 2), abs=1e-12)
    with pytest.raises(ValueError, match="along the needle"):
        progression_pose(entry, target, "HFP", toward_lps=n)


def test_progression_is_the_true_lateral_of_the_vertebra_with_its_foreshortening():
    target = np.array([0.0, 0.0, 0.0])
    entry = target - 90.0 * WORKED_N  # right-sided entry, 15 deg medial, 10 deg cranial
    rot = np.radians(8.0)  # a vertebra turned 8 deg in the axial plane
    lat = np.array([math.cos(rot), math.sin(rot), 0.0])
    lv = lateral_view(entry, target, lat, "HFP", level="L2")
    d = lv.pose.detector_dir_lps
    assert lv.true_lateral and lv.off_deg == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(d, -lat, atol=1e-9)  # along its axis, on the entry (right) side
    # apparent length: the needle's projection onto the image plane over its length
    n = WORKED_N / np.linalg.norm(WORKED_N)
    assert lv.needle_length_fraction == pytest.approx(np.linalg.norm(n - (n @ d) * d))
    # a needle converging 15 deg medially looks shorter on a true lateral of an unturned one
    plain = lateral_view(entry, target, None, "HFP")
    assert plain.needle_length_fraction == pytest.approx(
        math.cos(math.asin(math.sin(math.radians(15)) * math.cos(math.radians(10)))), abs=1e-9)
    assert "true lateral of L2" in lv.text and "RIGHT" in lv.text
    assert f"{100 * lv.needle_length_fraction:.0f}% of its length" in lv.text
    # the entry side out of reach: the mirrored lateral (same beam line), said so
    left_only = CArmLimits(rotation_deg=(-117.0, 0.0))  # prone: the right lateral is +98
    lv2 = lateral_view(entry, target, lat, "HFP", limits=left_only, level="L2")
    assert lv2.true_lateral and lv2.pose.detector_dir_lps @ lat > 0.999
    assert "out of the C-arm's reach" in lv2.text
    # neither side reachable: the nearest reachable lateral, and the sentence warns
    narrow = CArmLimits(rotation_deg=(-60.0, 60.0))
    lv3 = lateral_view(entry, target, lat, "HFP", limits=narrow, level="L2")
    assert not lv3.true_lateral and lv3.off_deg > 20.0
    assert check_reachable(lv3.pose, narrow).reachable
    assert "posterior wall is not in profile" in lv3.text


# --- reachability ---------------------------------------------------------------------------
def test_reachable_worked_pose():
    r = check_reachable(CArmPose(-165.0, -10.0, "HFP"))
    assert r.reachable and r.nearest == CArmPose(-165.0, -10.0, "HFP")


def test_unreachable_rotation_gives_nearest():
    # table rotation 150 (beyond +105): detector far over to the table left, toward the floor
    pose = CArmPose.from_table_angles(150.0, 0.0, "HFS")
    r = check_reachable(pose)
    assert not r.reachable
    assert "rotation +150.0" in r.reason and "-117..+105" in r.reason
    tp, ts = r.nearest.table_angles_deg
    assert tp == pytest.approx(105.0, abs=0.05) and ts == pytest.approx(0.0, abs=0.05)
    assert r.angle_off_deg == pytest.approx(45.0, abs=0.05)
    assert check_reachable(r.nearest).reachable


def test_unreachable_wraps_to_the_closer_end():
    # table rotation 170: -117 is 73 deg away across the seam, +105 is 65 deg away
    r = check_reachable(CArmPose.from_table_angles(170.0, 0.0, "HFS"))
    assert r.nearest.table_angles_deg[0] == pytest.approx(105.0, abs=0.05)
    r = check_reachable(CArmPose.from_table_angles(-160.0, 0.0, "HFS"))
    assert r.nearest.table_angles_deg[0] == pytest.approx(-117.0, abs=0.05)


def test_unreachable_angulation_and_sid_and_opposite_side():
    pose = CArmPose(-150.0, -60.0, "HFP", sid_mm=1300.0)
    r = check_reachable(pose)
    assert not r.reachable
    assert "angulation -60.0" in r.reason and "SID 1300" in r.reason
    assert r.nearest.table_angles_deg[1] == pytest.approx(-45.0, abs=0.05)
    assert r.nearest.table_angles_deg[0] == pytest.approx(30.0, abs=0.1)
    assert r.nearest.sid_mm == 1190.0
    assert "opposite detector side" not in r.reason  # (-d) would need +60 angulation
    r2 = check_reachable(CArmPose.from_table_angles(180.0, 0.0, "HFS"))
    assert "opposite detector side" in r2.reason


def test_custom_limits():
    limits = CArmLimits(rotation_deg=(-30.0, 30.0), angulation_deg=(-20.0, 20.0))
    pose = CArmPose(-165.0, -10.0, "HFP")
    assert check_reachable(pose, limits).reachable
    r = check_reachable(CArmPose(-120.0, 0.0, "HFP"), limits)  # table rotation +60
    assert not r.reachable
    assert r.nearest.table_angles_deg[0] == pytest.approx(30.0, abs=0.05)


def test_pose_validation():
    with pytest.raises(ValueError, match="secondary"):
        CArmPose(0.0, 95.0)
    with pytest.raises(ValueError, match="SOD"):
        CArmPose(0.0, 0.0, sid_mm=700.0, sod_mm=750.0)
    with pytest.raises(ValueError, match="patient position"):
        CArmPose(0.0, 0.0, "XYZ")
    assert CArmPose(370.0, 0.0).primary_deg == 10.0
    sq = CArmPose(0.0, 0.0).with_image_size(512)
    assert sq.image_shape_px == (512, 512) and sq.detector_mm == (300.0, 300.0)


def test_words_name_each_angle_change_in_patient_terms():
    assert signed(-0.04) == "0.0" and signed(0.04) == "0.0" and signed(-0.06) == "-0.1"
    assert signed(15.44) == "+15.4" and signed(-3.0, 0) == "-3"
    # prone: table rotation + turns the detector toward the patient's right, angulation +
    # toward the head; the detector's own movement says the same
    for pos in ("HFS", "HFP", "FFS", "FFP"):
        a = CArmPose.from_table_angles(0.0, 0.0, pos)
        b = CArmPose.from_table_angles(5.0, 0.0, pos)
        c = CArmPose.from_table_angles(0.0, 5.0, pos)
        moved_left = (b.detector_dir_lps - a.detector_dir_lps)[0] > 0
        assert rotation_side(pos) == ("LEFT" if moved_left else "RIGHT")
        assert rotation_side(pos, -1.0) != rotation_side(pos)
        moved_head = (c.detector_dir_lps - a.detector_dir_lps)[2] > 0
        assert angulation_end(pos) == ("HEAD" if moved_head else "FEET")
    assert rotation_side("HFP") == "RIGHT" and angulation_end("FFP") == "FEET"
    # the worked check's needle from a straight PA: each DICOM angle's part named
    ref = CArmPose(180.0, 0.0, "HFP")
    pose = CArmPose(-165.0, -10.0, "HFP")
    words = tilt_words(ref, pose)
    assert words == "tilt the detector 15 deg toward the patient's RIGHT and 10 deg toward the FEET"
    wv = working_view(np.zeros(3) - 90.0 * WORKED_N, np.zeros(3), ref)
    assert wv.text.startswith("from the reference bull's-eye, tilt the detector 15 deg toward "
                              "the patient's RIGHT and 10 deg toward the FEET")
