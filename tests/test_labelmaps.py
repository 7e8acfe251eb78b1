"""Anatomy from label maps made elsewhere: TotalSegmentator (multilabel file and per-structure
folder) and 3D Slicer ``.seg.nrrd``; the phantom's own labels check the measurements."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
from conftest import shared_data
from phantom_fixtures import small_phantom
from scipy import ndimage as ndi

from fluoroplan.io.volume import CTVolume
from fluoroplan.segmentation.errors import LabelMapError
from fluoroplan.segmentation.labelmaps import (
    TOTALSEG_V2_IDS,
    anatomy_from_label_map,
    read_label_map,
)

ABDOMEN_V2 = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}


def _write_seg_nrrd(path, labels_kji, lps_from_ijk, names, ras=False):
    """A 3D Slicer-style segmentation file (one layer), written with pynrrd."""
    A = np.asarray(lps_from_ijk, float)
    if ras:
        A = np.diag([-1.0, -1.0, 1.0, 1.0]) @ A
    hdr = {
        "space": "right-anterior-superior" if ras else "left-posterior-superior",
        "space directions": A[:3, :3].T,
        "space origin": A[:3, 3],
        "kinds": ["domain", "domain", "domain"],
    }
    for n, (value, name) in enumerate(names.items()):
        hdr[f"Segment{n}_Name"] = name
        hdr[f"Segment{n}_LabelValue"] = str(value)
        hdr[f"Segment{n}_Layer"] = "0"
        hdr[f"Segment{n}_ID"] = f"Segment_{n + 1}"
    nrrd.write(str(path), np.ascontiguousarray(labels_kji), hdr, index_order="C")


# --- phantom: the measurements on exact labels -----------------------------------------------
def test_phantom_seg_nrrd_measures_every_level_like_the_truth(tmp_path):
    ph = small_phantom()
    names = {n + 1: v["label"] for n, v in enumerate(ph.truth["vertebrae"])}
    names[len(names) + 1] = "liver"  # another structure: ignored
    path = tmp_path / "phantom.seg.nrrd"
    _write_seg_nrrd(path, ph.labels, ph.volume.lps_from_ijk, names)
    an = anatomy_from_label_map(ph.volume, path, metal_mask=ph.metal)
    assert [v.label for v in an.vertebrae] == [v["label"] for v in ph.truth["vertebrae"]]
    assert all(v.label_source == "label-map" and v.label_confident for v in an.vertebrae)
    for v, t in zip(an.vertebrae, ph.truth["vertebrae"], strict=True):
        assert np.linalg.norm(v.centroid_lps - t["centroid_lps"]) < 3.0, t["label"]
        for k in ("anterior", "middle", "posterior"):
            assert abs(v.heights_mm[k] - t["heights_mm"][k]) < 2.0, (t["label"], k, v.heights_mm)
        assert v.fracture_grade == t["fracture_grade"], t["label"]
        assert v.pedicle_left is not None and v.pedicle_right is not None
    assert an.labels.shape == ph.volume.hu.shape
    # the label volume keeps the map's voxels
    assert (an.labels > 0).sum() == (ph.labels > 0).sum()


def test_seg_nrrd_in_ras_on_another_grid_lands_on_the_same_vertebrae(tmp_path):
    ph = small_phantom()
    names = {n + 1: v["label"] for n, v in enumerate(ph.truth["vertebrae"])}
    # every second voxel in-plane (a coarser grid), stored in RAS
    sub = ph.labels[:, ::2, ::2]
    A = ph.volume.lps_from_ijk.copy()
    A[:3, 0] *= 2.0
    A[:3, 1] *= 2.0
    path = tmp_path / "coarse_ras.seg.nrrd"
    _write_seg_nrrd(path, sub, A, names, ras=True)
    an = anatomy_from_label_map(ph.volume, path, metal_mask=ph.metal)
    for v, t in zip(an.vertebrae, ph.truth["vertebrae"], strict=True):
        assert v.label == t["label"]
        assert np.linalg.norm(v.centroid_lps - t["centroid_lps"]) < 3.0, t["label"]


def _ts_multilabel(tmp_path, ph, sacrum_split: bool):
    """The phantom's labels as a TotalSegmentator v2 multilabel file whose last vertebra is
    given as S1 (26) over its cranial half and as the sacrum class (25) over its caudal half;
    or, without ``sacrum_split``, as the sacrum class alone (TotalSegmentator v1)."""
    import SimpleITK as sitk

    verts = ph.truth["vertebrae"]
    ts = np.zeros(ph.labels.shape, np.uint8)
    for n, v in enumerate(verts[:-1]):
        ts[ph.labels == n + 1] = {"T11": 33, "T12": 32, "L1": 31, "L2": 30, "L3": 29}[v["label"]]
    last = ph.labels == len(verts)
    k = np.nonzero(last.any(axis=(1, 2)))[0]
    cut = int(np.median(k))
    caudal = last.copy()
    caudal[cut:] = False  # slices run toward the head: low k is caudal
    ts[last] = 26 if sacrum_split else 25
    if sacrum_split:
        ts[caudal] = 25
    im = sitk.GetImageFromArray(ts)
    A = ph.volume.lps_from_ijk
    im.SetSpacing([float(np.linalg.norm(A[:3, a])) for a in range(3)])
    im.SetDirection((A[:3, :3] / np.linalg.norm(A[:3, :3], axis=0)).ravel().tolist())
    im.SetOrigin(A[:3, 3].tolist())
    path = tmp_path / f"ts_{int(sacrum_split)}.nii.gz"
    sitk.WriteImage(im, str(path))
    return path, last, caudal


def test_sacrum_class_is_below_s1_when_s1_has_its_own(tmp_path):
    from fluoroplan.segmentation.vertebrae import SACRUM_BELOW_S1

    ph = small_phantom()
    path, last, caudal = _ts_multilabel(tmp_path, ph, sacrum_split=True)
    an = anatomy_from_label_map(ph.volume, path, metal_mask=ph.metal)
    assert [v.label for v in an.vertebrae][-2:] == ["L3", "S1"]
    s1 = an.vertebra("S1")
    assert s1.kind == "sacrum"
    # S1 is its own class only; the sacrum below it keeps its voxels but is not a vertebra
    assert (an.labels == s1.label_value).sum() == (last & ~caudal).sum()
    assert (an.labels == SACRUM_BELOW_S1).sum() == caudal.sum()
    assert all(v.label_value != SACRUM_BELOW_S1 for v in an.vertebrae)

    path1, last, _ = _ts_multilabel(tmp_path, ph, sacrum_split=False)
    an1 = anatomy_from_label_map(ph.volume, path1, metal_mask=ph.metal)
    s1 = an1.vertebra("S1")  # the sacrum class alone is the whole sacrum, S1
    assert (an1.labels == s1.label_value).sum() == last.sum()
    assert not (an1.labels == SACRUM_BELOW_S1).any()


def test_label_map_errors_name_the_problem(tmp_path):
    with pytest.raises(LabelMapError, match="No label map"):
        read_label_map(tmp_path / "missing.nii.gz")
    (tmp_path / "notes.txt").write_text("no masks here")
    with pytest.raises(LabelMapError, match="no vertebra masks"):
        read_label_map(tmp_path)
    import SimpleITK as sitk

    im = sitk.GetImageFromArray(np.ones((4, 4, 4), np.uint8) * 3)  # class 3: not a vertebra
    sitk.WriteImage(im, str(tmp_path / "organs.nii.gz"))
    with pytest.raises(LabelMapError, match="no TotalSegmentator v2 vertebra classes"):
        read_label_map(tmp_path / "organs.nii.gz")


def test_totalsegmentator_v2_ids():
    assert TOTALSEG_V2_IDS[27] == "L5" and TOTALSEG_V2_IDS[31] == "L1"
    assert TOTALSEG_V2_IDS[32] == "T12" and TOTALSEG_V2_IDS[50] == "C1"
    assert TOTALSEG_V2_IDS[25] == "sacrum" and TOTALSEG_V2_IDS[26] == "S1"


# --- the real TotalSegmentator files ----------------------------------------------------------
def _abdomen():
    import SimpleITK as sitk

    im = sitk.ReadImage(str(shared_data("totalseg-abdomen-ct", "ct.nii.gz")))
    a = np.clip(sitk.GetArrayFromImage(im), -1024, 3071).astype(np.int16)
    A = np.eye(4)
    A[:3, :3] = np.array(im.GetDirection()).reshape(3, 3) * np.array(im.GetSpacing())
    A[:3, 3] = im.GetOrigin()
    lab_path = shared_data("totalseg-abdomen-ct", "labels_totalseg.nii.gz")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(lab_path)))
    return CTVolume(a, A), ref, lab_path


def _check_abdomen(an, vol, ref):
    assert [v.label for v in an.vertebrae] == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert an.vertebrae[-1].kind == "sacrum"
    assert all(v.label_source == "label-map" and v.label_confident for v in an.vertebrae)
    assert not an.vertebra("T11").complete  # cut by the top of the scan
    for value, name in ABDOMEN_V2.items():
        c = np.array(ndi.center_of_mass(ref == value))[::-1]
        p = vol.lps_from_ijk[:3, :3] @ c + vol.lps_from_ijk[:3, 3]
        v = an.vertebra(name)
        assert np.linalg.norm(v.vertebra_centroid_lps - p) < 0.5, name
        assert (an.labels == v.label_value).sum() == (ref == value).sum(), name
    for name in ("L1", "L2", "L3", "L5"):
        v = an.vertebra(name)
        hs = [v.heights_mm[k] for k in ("anterior", "middle", "posterior")]
        assert all(18.0 < h < 40.0 for h in hs), (name, hs)
        assert v.fracture_grade is not None
        assert v.canal_center_lps is not None and 4.0 < v.canal_radius_mm < 15.0
        # the body lies in front of the canal
        assert v.centroid_lps[1] < v.canal_center_lps[1]


@pytest.mark.realdata
def test_totalsegmentator_multilabel_file():
    vol, ref, path = _abdomen()
    _check_abdomen(anatomy_from_label_map(vol, path), vol, ref)


@pytest.mark.realdata
def test_totalsegmentator_folder_and_seg_nrrd_give_the_same_anatomy(tmp_path):
    import SimpleITK as sitk

    vol, ref, path = _abdomen()
    src = sitk.ReadImage(str(path))
    folder = tmp_path / "segmentations"
    folder.mkdir()
    for value, name in ABDOMEN_V2.items():
        fname = "sacrum" if name == "S1" else f"vertebrae_{name}"
        im = sitk.GetImageFromArray((ref == value).astype(np.uint8))
        im.CopyInformation(src)
        sitk.WriteImage(im, str(folder / f"{fname}.nii.gz"))
    liver = sitk.GetImageFromArray((ref == 5).astype(np.uint8))
    liver.CopyInformation(src)
    sitk.WriteImage(liver, str(folder / "liver.nii.gz"))
    an_folder = anatomy_from_label_map(vol, folder)
    _check_abdomen(an_folder, vol, ref)

    seg = tmp_path / "abdomen.seg.nrrd"
    names = {value: ("sacrum" if n == "S1" else n) for value, n in ABDOMEN_V2.items()}
    _write_seg_nrrd(seg, ref.astype(np.uint8), vol.lps_from_ijk, names, ras=True)
    an_seg = anatomy_from_label_map(vol, seg)
    _check_abdomen(an_seg, vol, ref)
    for a, b in zip(an_folder.vertebrae, an_seg.vertebrae, strict=True):
        assert np.allclose(a.vertebra_centroid_lps, b.vertebra_centroid_lps, atol=1e-6)
