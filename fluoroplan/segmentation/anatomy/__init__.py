"""Spine anatomy from a CT: bone, spinal canal, vertebrae separated and measured, level labels.

Method (no per-voxel Python loops; scipy.ndimage and SimpleITK filters):

1. The CT is viewed in a canonical orientation (axes S, P, L) and averaged into blocks of about
   ``GRID_MM`` (metal counts as bone-occupying, never as density).
2. **Canal.** On every axial slice, bone holes (regions of soft-tissue density enclosed by bone)
   of canal size with a thick bone mass (a body) in front of them are canal candidates; the
   longest chain of candidates that continues smoothly from slice to slice is the spinal canal.
   No chain over several levels means no spine (:class:`NoSpineFound`).
3. **Bodies.** The body centreline runs parallel to the canal at the middle of the body's depth,
   read from the density profile along the midline ray in front of the canal, averaged over
   about two vertebral periods (discs and dark osteoporotic interiors do not move it). Bone is
   thresholded half-way between the disc level and the body level of the profile along that
   line (adaptive: low in osteoporotic bone), its holes are filled slice-wise inside the body's
   own region (a dark cancellous interior inside a cortex counts; rib heads cannot close a
   ring around a disc), and the *fraction of the body section that is filled bone* is taken
   every millimetre along the line (it gives the vertebral period by autocorrelation, and
   where bone is). Discs are found on the CT's *native voxels* in a thin tube around the line
   at mid-body: a disc is a dip between two bright endplates close on either side (within
   ``DISC_REACH_MM``), both brighter than the body interior around them, while a body's dark
   interior lies between cortices a body's height apart (a thin thoracic disc vanishes on the
   block grid, where a dark interior looks like a gap). Discs are the chain of these dips whose
   spacings fit the period, with bone on both sides and a minimum body height, so a body is
   never split; metal in a disc space (cage) or a run two periods long (fusion) is split at the
   expected level. The sacrum is the last body when it is much wider than the bodies above it
   (alae, sacro-iliac joints).
4. **Whole vertebrae.** Each body section between its two disc planes is one vertebra's seed,
   with its pedicles (beside the canal, upper half of the body) and the junction of its laminae
   (behind the canal, lower half of the body to the disc below); a marker watershed on the bone
   distance map gives the rest of each posterior arch to its own body, lateral bone and bone
   well in front of the body (a contrast-filled aorta, a stent graft) to the background. The
   label map also takes each body's dark interior where its thin posterior wall is not bone at
   the threshold (closed by the canal's front edge, a voxel's gap in a thin cortex bridged; up
   to the scan's edge where the body is cut by it). A body cut by the top of the scan has the
   arch of the vertebra above behind it (laminae and spinous process slope caudally): midline
   arch bone above the cut body's mid-height (from the height of the whole bodies below) seeds
   that vertebra, reported as a partial one (``complete=False``, arch only, not measured).
   Ribs are the background bone leaving the column laterally (or the edge of a
   cropped scan beside the canal) that touches a vertebra on both sides; their medial ends are
   the rib heads.
5. **Measurements** per vertebra at full resolution in its own frame (``vertebrae.measure_body``),
   measured again along the endplates' own axis when it differs from the centreline's, and the
   Genant grade against its neighbours. A height is read only where both ends of the body drop
   into something darker than bone (a disc); a body whose heights are missing, biconvex (no
   wedge, biconcave or crush shape) or much taller than its neighbours' is not graded, with a
   warning saying why (``vertebrae.grade_heights``): never a confident grade on ends that are
   not endplates.
6. **Levels** from an anchor (the sacrum, or the last rib-bearing vertebra = T12 when every
   vertebra above it bears ribs), else V1..Vn with ``label_confident`` False.

Submodules, each importing only those listed above it:

- ``grid``: the canonical orientation (``_canonical``), the block-averaged working grid and the
  way back to the CT grid (bounding boxes, centroids, full-resolution labels).
- ``result``: :class:`Anatomy`, the analysed spine.
- ``canal_track``: step 2, the spinal canal's track on the grid.
- ``discs``: the body line in front of the canal, the vertebral period, the discs and the body
  runs between them.
- ``separation``: steps 3-4, bodies and whole vertebrae separated by a marker watershed, the
  sacrum, the ribs (its ``_DEBUG``, when set to a dict, collects intermediate profiles).
- ``labelling``: steps 5-6, vertebrae assembled, graded and labelled.
- ``pipeline``: the entry point :func:`analyze_anatomy` (and its progress report ``_report``).
"""

from __future__ import annotations

from fluoroplan.segmentation.anatomy.grid import _Canon as _Canon
from fluoroplan.segmentation.anatomy.grid import _canonical as _canonical
from fluoroplan.segmentation.anatomy.pipeline import _report as _report
from fluoroplan.segmentation.anatomy.pipeline import analyze_anatomy
from fluoroplan.segmentation.anatomy.result import Anatomy

__all__ = ["Anatomy", "analyze_anatomy"]
