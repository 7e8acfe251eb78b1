"""The generator: ``make_phantom`` draws the whole case and assembles its truth.

It validates the request, lays out the column, calls the anatomy, pelvis, implant and artifact
drawers in order, adds noise, clips to the 12-bit range, flips to the stored orientation and
returns a ``Phantom`` (volume, truth, labels, metal, structures).
"""

from __future__ import annotations

import json
import time

import numpy as np

from fluoroplan.geometry.conventions import CT_CLIP_HU
from fluoroplan.io.volume import CTVolume
from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom.anatomy import (
    _draw_canal,
    _draw_disc,
    _draw_lungs,
    _draw_ribs,
    _draw_trunk,
    _draw_vertebra,
    _vertebra_truth,
)
from fluoroplan.resources.phantom.artifacts import add_metal_streaks
from fluoroplan.resources.phantom.blooming import _blur_psf
from fluoroplan.resources.phantom.canvas import _f
from fluoroplan.resources.phantom.implants import (
    _draw_cage,
    _draw_cement,
    _draw_crosslink,
    _draw_instrumentation,
)
from fluoroplan.resources.phantom.model import (
    GENANT_LOSS,
    HU_AIR,
    HU_CSF,
    HU_DISC,
    HU_FAT,
    HU_HALO,
    HU_LUNG,
    HU_MUSCLE,
    LEVELS,
    ORDER,
    SCHEMA,
    SIDES,
    STRUCTURE_CODES,
    Phantom,
    ProgressCallback,
)
from fluoroplan.resources.phantom.pelvis import draw_pelvis
from fluoroplan.resources.phantom.sacrum import carve_foramina, make_sacrum
from fluoroplan.resources.phantom.vertebra import _make_column


# --- the generator ---------------------------------------------------------------------------
def make_phantom(
    seed: int = 0,
    *,
    shape_ijk: tuple[int, int, int] = (512, 512, 300),
    pixel_mm: float = 0.75,
    slice_mm: float = 1.0,
    patient_position: str = "HFP",
    levels: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4"),
    instrumented: tuple[str, ...] = ("L1", "L2", "L3"),
    loose_screw: str | None = "L2-left",
    halo_mm: float = 2.0,
    fracture_level: str | None = "L4",
    fracture_grade: int = 2,
    cage: tuple[str, str] | None = None,
    cage_material: str = "titanium",
    cage_subsidence_mm: float = 0.0,
    screw_diameter_mm: float = 6.5,
    screw_length_mm: float = 45.0,
    rod_diameter_mm: float = 5.5,
    streaks: bool = False,
    blooming_mm: float = 0.0,
    noise_hu: float = 15.0,
    crosslinks: tuple[str, ...] = (),
    crosslink_section_mm: tuple[float, float] = (5.0, 10.0),
    cement: tuple[str, ...] = (),
    augmented_screw: str | None = None,
    pelvis: bool = False,
    sacrum: bool = False,
    progress: ProgressCallback | None = None,
) -> Phantom:
    """Generate the synthetic instrumented spine CT and its ground truth.

    Parameters
    ----------
    seed : int
        Varies dimensions (+-5 % globally, +-2 % per level), sagittal/coronal/axial alignment,
        pedicle and screw angles, bone density, trunk size and the noise.
    shape_ijk : (ni, nj, nk)
        Columns, rows, slices. The default 512 x 512 x 300 at 0.75 x 0.75 x 1 mm covers
        384 x 384 x 300 mm; the default six levels span about 200 mm, centred in z.
    pixel_mm, slice_mm : float
        In-plane pixel size and slice spacing (mm).
    patient_position : "HFP" (prone, the procedure's position) or "HFS" (supine).
        Stored orientation is the one scanners write: HFS row (1,0,0) column (0,1,0) (patient's
        back at the bottom of the image); HFP row (-1,0,0) column (0,-1,0), so that the prone
        patient is displayed as lying, back up, with the table at the bottom of the image.
        Slices run toward the head (+z) in both.
    levels : consecutive labels from T8..L5, cranial to caudal.
    instrumented : consecutive levels (2 or more) that receive bilateral screws and rods.
    loose_screw : ``"<level>-<left|right>"`` or None; that screw has a halo of ``halo_mm``
        (radiolucent, 20 HU) around its threaded shaft, inside bone only.
    fracture_level, fracture_grade : Genant grade 1 (20-25 %), 2 (25-40 %), 3 (> 40 %)
        anterior height loss, wedge shaped (posterior height kept); None or grade 0 for none.
    cage : (upper, lower) adjacent levels or None; ``cage_material`` "titanium" (open box,
        walls metal, graft inside) or "peek" (300 HU with three 1.5 mm tantalum beads);
        ``cage_subsidence_mm`` sinks it into the lower level's superior endplate.
    screw_diameter_mm, screw_length_mm : shaft (outer thread) diameter and length (head to tip).
    rod_diameter_mm : rod diameter.
    streaks : draw metal streak artifacts.
    blooming_mm : metal blooming: the whole image is blurred with the scanner's Gaussian
        point-spread function of sigma ``blooming_mm / 2`` before the 12-bit clip, so metal's
        bright rim (above ~2 % of its contrast) reaches ``blooming_mm`` beyond its surface;
        0 for the sharp scanner of the partial-volume ramp alone.
    noise_hu : standard deviation of the Gaussian noise.
    crosslinks : instrumented levels that carry a transverse rod connector (cross-link): a
        straight titanium bar running left-right between the rods, behind them, clamped onto
        both rods halfway between this level's rod seats and the next instrumented level's
        (the level above for the last one). Truth: ``truth["crosslinks"]``.
    crosslink_section_mm : (antero-posterior thickness, cranio-caudal width) of the bar; equal
        values draw a round bar of that diameter.
    cement : levels whose body holds bone cement from a previous vertebroplasty: a lobulated
        PMMA blob (1600-2800 HU, about 1.5-3 ml, its core above 2400) in the anterior two thirds of the body's lower
        half, with a thin tongue leaking into the disc below. Truth: ``truth["cement"]``.
    augmented_screw : ``"<level>-<left|right>"`` or None: that screw is cement-augmented, a
        PMMA cuff (1900-2600 HU) around its distal half and a few mm beyond its tip, in bone
        only (``truth["cement"]`` and the screw's ``"cement_augmented"``).
    Cement is not metal (not in ``Phantom.metal``) and keeps its vertebra's label.
    pelvis : draw both ilia beside L5 (``levels`` must end at "L5"): curved iliac wings, their
        crest at about the L4-L5 disc, the posterior superior iliac spine lateral and posterior
        to L5's transverse processes (``fluoroplan.resources.phantom.pelvis``); their voxels are
        ``STRUCTURE_CODES["ilium"]`` in ``structures``. Truth: ``truth["pelvis"]``.
    sacrum : draw S1 and S2 below L5 (``levels`` must end at "L5";
        ``fluoroplan.resources.phantom.sacrum``): the S1 body and its promontory, the alae out
        to the sacro-iliac joints, the sacral canal, the S1 and S2 foramina
        (``STRUCTURE_CODES["sacral_foramen"]``); "S1" may then end ``instrumented`` (bilateral
        S1 screws converging toward the promontory) and ``loose_screw`` may be "S1-left".
        S1 is labelled like a vertebra (truth ``kind`` "sacrum"). Truth: ``truth["sacrum"]``.
    progress : ``progress(fraction, message)`` callback.
    """
    t_start = time.perf_counter()
    progress = progress or (lambda f, m: None)
    if sacrum and levels[-1] != "L5":
        raise ValueError(f"sacrum=True draws S1 below L5: levels must end at 'L5', not "
                         f"{levels[-1]!r}")
    if "S1" in instrumented and (not sacrum or instrumented[-1] != "S1"
                                 or len(instrumented) < 2 or instrumented[-2] != "L5"):
        raise ValueError("'S1' can end instrumented only after 'L5' and with sacrum=True")
    lumbar = tuple(x for x in instrumented if x != "S1")
    if "S1" not in instrumented:
        lumbar_ok = tuple(instrumented)
    else:  # L5-S1 alone: L5 is checked above
        lumbar_ok = lumbar if len(lumbar) >= 2 else ()
    loose_lumbar = loose_screw if loose_screw and loose_screw.rpartition("-")[0] in lumbar_ok \
        else None
    _validate(levels, lumbar_ok, loose_lumbar, fracture_level, fracture_grade, cage,
              cage_material, patient_position)
    if loose_screw is not None and loose_lumbar is None:
        lvl, _, side = loose_screw.rpartition("-")
        if lvl not in instrumented or side not in SIDES:
            raise ValueError(f"loose_screw {loose_screw!r} is not one of the screws")
    _validate_extras(levels, instrumented, loose_screw, crosslinks, crosslink_section_mm, cement,
                     augmented_screw)
    if pelvis and levels[-1] != "L5":
        raise ValueError(f"pelvis=True draws the ilia beside L5: levels must end at 'L5', not {levels[-1]!r}")
    rng = np.random.default_rng(seed)
    grid = S.Grid(shape_ijk, pixel_mm, slice_mm)
    hu = np.full(grid.shape_kji, HU_AIR, np.float32)
    labels = np.zeros(grid.shape_kji, np.uint8)
    metal = np.zeros(grid.shape_kji, bool)
    structures = np.zeros(grid.shape_kji, np.uint8)

    # trunk (the same along z), seeded size
    ta, tb = 150.0 * rng.uniform(0.95, 1.05), 105.0 * rng.uniform(0.95, 1.05)
    y_spine = 14.0 + rng.uniform(-4.0, 4.0)  # skin ~75-85 mm behind the posterior body wall
    column = _make_column(rng, levels, y_spine)
    by_label = {v.label: v for v in column}
    verts = [by_label[lbl] for lbl in levels]
    for n, vt in enumerate(verts, start=1):
        vt.index = n
    if fracture_level and fracture_grade:
        lo, hi = GENANT_LOSS[int(fracture_grade)]
        by_label[fracture_level].frac = float(rng.uniform(lo, hi))
    for vt in column:
        vt.build_parts()
    sac = None
    drawn = list(verts)  # what is drawn, cranial to caudal: the levels, then the sacrum
    if sacrum:
        sac = make_sacrum(by_label["L5"], seed)
        sac.index = len(verts) + 1
        sac.build_parts()
        by_label["S1"] = sac
        drawn.append(sac)
    progress(0.05, "Drawing the trunk")

    _draw_trunk(hu, grid, ta, tb, verts, by_label, patient_position)
    progress(0.15, "Drawing the lungs")
    _draw_lungs(hu, grid, ta, tb, by_label)
    progress(0.2, "Drawing discs and ribs")
    for up, lo_ in zip(drawn[:-1], drawn[1:], strict=True):
        _draw_disc(hu, grid, up, lo_)
    rib_heads = {}
    for vt in verts:
        if vt.thoracic:
            rib_heads[vt.label] = _draw_ribs(hu, grid, vt, ta, tb, structures)
    pelvis_truth = None
    if pelvis:
        pelvis_truth = draw_pelvis(hu, grid, by_label["L5"], structures, STRUCTURE_CODES["ilium"],
                                   np.random.default_rng([seed, 19]))
    progress(0.3, "Drawing vertebrae")
    for vt in drawn:
        _draw_vertebra(hu, labels, grid, vt)
    # a vertebra drawn over a rib head takes it: the rib is what stays outside the vertebrae
    structures[(labels > 0) & (structures == STRUCTURE_CODES["rib"])] = 0
    if pelvis:
        structures[(labels > 0) & (structures == STRUCTURE_CODES["ilium"])] = 0
    for n, vt in enumerate(drawn):
        _draw_canal(hu, labels, grid, vt, first=(n == 0), last=(n == len(drawn) - 1),
                    structures=structures)
    sacrum_truth = None
    if sac is not None:
        foramina = carve_foramina(hu, labels, grid, sac, structures,
                                  STRUCTURE_CODES["sacral_foramen"])
        sacrum_truth = {"promontory_lps": _f(sac.lps(sac.promontory_local)),
                        "ala_reach_mm": round(float(sac.ala_mm), 3),
                        "s2_height_mm": round(float(sac.s2_mm), 3), "foramina": foramina}
    progress(0.5, "Placing implants")

    cages = []
    if cage is not None:
        cages.append(_draw_cage(hu, labels, metal, grid, by_label[cage[0]], by_label[cage[1]],
                                cage_material, cage_subsidence_mm, rng))
    cements = [_draw_cement(hu, grid, by_label[lvl], np.random.default_rng([seed, 13, n]))
               for n, lvl in enumerate(cement)]
    screws, rods = _draw_instrumentation(
        hu, labels, metal, grid, by_label, instrumented, loose_screw, halo_mm,
        screw_diameter_mm, screw_length_mm, rod_diameter_mm, rng,
        augmented=(augmented_screw, np.random.default_rng([seed, 17]), cements))
    links = [_draw_crosslink(hu, labels, metal, grid, screws, instrumented, lvl,
                             crosslink_section_mm, rod_diameter_mm) for lvl in crosslinks]
    structures[metal] = 0  # metal drawn into the canal or a rib is metal, not lumen or bone
    progress(0.65, "Artifacts and noise")
    if streaks:
        add_metal_streaks(hu, metal, grid.x, grid.y, np.random.default_rng([seed, 7]))
    if blooming_mm > 0:
        _blur_psf(hu, grid, blooming_mm)
    # noise (chunked to bound memory), clip, store
    noise_rng = np.random.default_rng([seed, 11])
    out = np.empty(grid.shape_kji, np.int16)
    step = 16
    for k0 in range(0, grid.shape_kji[0], step):
        chunk = hu[k0:k0 + step]
        if noise_hu > 0:
            chunk += noise_rng.standard_normal(chunk.shape, dtype=np.float32) * np.float32(noise_hu)
        np.clip(chunk, -1024, CT_CLIP_HU, out=chunk)
        out[k0:k0 + step] = np.rint(chunk)
    del hu
    progress(0.9, "Writing the truth")

    if patient_position == "HFP":
        out = np.ascontiguousarray(out[:, ::-1, ::-1])
        labels = np.ascontiguousarray(labels[:, ::-1, ::-1])
        metal = np.ascontiguousarray(metal[:, ::-1, ::-1])
        structures = np.ascontiguousarray(structures[:, ::-1, ::-1])
        affine = np.eye(4)
        affine[0, 0] = affine[1, 1] = -grid.pixel_mm
        affine[2, 2] = grid.slice_mm
        affine[:3, 3] = (grid.x[-1], grid.y[-1], grid.z[0])
    else:
        affine = grid.lps_from_ijk()

    params = {
        "shape_ijk": [int(n) for n in shape_ijk], "pixel_mm": float(pixel_mm),
        "slice_mm": float(slice_mm), "levels": list(levels), "instrumented": list(instrumented),
        "loose_screw": loose_screw, "halo_mm": float(halo_mm), "fracture_level": fracture_level,
        "fracture_grade": int(fracture_grade) if fracture_level else 0,
        "cage": list(cage) if cage else None, "cage_material": cage_material,
        "cage_subsidence_mm": float(cage_subsidence_mm),
        "screw_diameter_mm": float(screw_diameter_mm), "screw_length_mm": float(screw_length_mm),
        "rod_diameter_mm": float(rod_diameter_mm), "streaks": bool(streaks),
        "blooming_mm": float(blooming_mm), "noise_hu": float(noise_hu),
        **({"crosslinks": list(crosslinks),
            "crosslink_section_mm": [float(x) for x in crosslink_section_mm]} if crosslinks else {}),
        **({"cement": list(cement)} if cement else {}),
        **({"augmented_screw": augmented_screw} if augmented_screw else {}),
        **({"pelvis": True} if pelvis else {}),
        **({"sacrum": True} if sacrum else {}),
        "trunk_semi_axes_mm": [round(ta, 3), round(tb, 3)],
        "hu": {"cortex": "850-1150", "trabecular": "150-250", "disc": HU_DISC, "csf": HU_CSF,
               "halo": HU_HALO, "lung": HU_LUNG, "fat": HU_FAT, "muscle": HU_MUSCLE,
               "metal": CT_CLIP_HU},
    }
    truth = {
        "schema": SCHEMA, "seed": int(seed), "patient_position": patient_position,
        "params": params,
        "vertebrae": [_vertebra_truth(vt, rib_heads.get(vt.label)) for vt in verts]
        + ([{**_vertebra_truth(sac, None), "kind": "sacrum"}] if sac is not None else []),
        "screws": screws, "rods": rods, "cages": cages,
        "crosslinks": links, "cement": cements,
        **({"pelvis": pelvis_truth} if pelvis else {}),
        **({"sacrum": sacrum_truth} if sac is not None else {}),
    }
    from pydicom.uid import generate_uid

    tag = f"fluoroplan-phantom-{seed}-{patient_position}-{json.dumps(params, sort_keys=True)}"
    identifiers = {
        "study_instance_uid": str(generate_uid(entropy_srcs=[tag, "study"])),
        "series_instance_uid": str(generate_uid(entropy_srcs=[tag, "series"])),
        "frame_of_reference_uid": str(generate_uid(entropy_srcs=[tag, "for"])),
        "series_description": f"Phantom spine {slice_mm:g}mm {patient_position}",
        "modality": "CT", "kernel": "BONE", "study_date": "20260101",
    }
    patient = {"name": "PHANTOM^SPINE", "id": f"FP-PHANTOM-{seed}", "birth_date": "19500101",
               "sex": "F"}
    volume = CTVolume(hu=out, lps_from_ijk=affine, patient_position=patient_position,
                      identifiers=identifiers, patient=patient,
                      notes=["synthetic phantom (fluoroplan.resources.phantom)"])
    progress(1.0, f"Phantom ready in {time.perf_counter() - t_start:.1f} s")
    return Phantom(volume=volume, truth=truth, labels=labels, metal=metal, structures=structures)


def _validate_extras(levels, instrumented, loose_screw, crosslinks, section, cement,
                     augmented_screw) -> None:
    for lvl in crosslinks:
        if lvl not in instrumented:
            raise ValueError(f"crosslink level {lvl!r} is not instrumented")
    if len(section) != 2 or min(section) <= 0:
        raise ValueError("crosslink_section_mm must be (thickness, width), both > 0")
    for lvl in cement:
        if lvl not in levels:
            raise ValueError(f"cement level {lvl!r} is not drawn")
    if augmented_screw is not None:
        lvl, _, side = augmented_screw.rpartition("-")
        if lvl not in instrumented or side not in SIDES:
            raise ValueError(f"augmented_screw {augmented_screw!r} is not one of the screws")
        if augmented_screw == loose_screw:
            raise ValueError("a cement-augmented screw has no halo: it cannot be the loose one")


def _validate(levels, instrumented, loose_screw, fracture_level, fracture_grade, cage,
              cage_material, patient_position) -> None:
    def consecutive(seq, what):
        if not seq:
            raise ValueError(f"{what} must not be empty")
        for s in seq:
            if s not in LEVELS:
                raise ValueError(f"unknown level {s!r} in {what}; known: {', '.join(ORDER)}")
        idx = [ORDER.index(s) for s in seq]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            raise ValueError(f"{what} must be consecutive, cranial to caudal: {seq}")

    consecutive(levels, "levels")
    if len(levels) < 2:
        raise ValueError("at least two levels are needed")
    if instrumented:  # () draws an uninstrumented spine: a CT without metal
        consecutive(instrumented, "instrumented")
        if len(instrumented) < 2 or not set(instrumented) <= set(levels):
            raise ValueError("instrumented must be two or more of the drawn levels, or empty")
    if loose_screw is not None:
        lvl, _, side = loose_screw.rpartition("-")
        if lvl not in instrumented or side not in SIDES:
            raise ValueError(f"loose_screw {loose_screw!r} is not one of the screws")
    if fracture_level is not None and fracture_level not in levels:
        raise ValueError(f"fracture_level {fracture_level!r} is not drawn")
    if int(fracture_grade) not in GENANT_LOSS:
        raise ValueError("fracture_grade must be 0..3")
    if cage is not None:
        if len(cage) != 2 or not set(cage) <= set(levels) or \
                ORDER.index(cage[1]) != ORDER.index(cage[0]) + 1:
            raise ValueError(f"cage must name two adjacent drawn levels, got {cage}")
    if cage_material not in ("titanium", "peek"):
        raise ValueError("cage_material must be 'titanium' or 'peek'")
    if patient_position not in ("HFS", "HFP"):
        raise ValueError("patient_position must be 'HFS' or 'HFP'")
