"""The domain model: what fluoroplan reasons about, as frozen dataclasses in LPS mm and degrees,
with no Qt and no files.

- :mod:`.implants`: a screw's halo, screws, rods, cages, cross-links, cement, other metal,
  and all the implants of a CT (what :mod:`fluoroplan.segmentation` finds);
- :mod:`.anatomy`: a vertebra with its body planes, pedicles and canal section (found on the
  CT or read from a TotalSegmentator / Slicer label map: the same objects);
- :mod:`.findings`: everything the analysis of a CT found, as one object;
- :mod:`.plan`: the needle, the target, the safety check, the trajectory, the "no safe
  trajectory" result and the plan (what :mod:`fluoroplan.planner` makes);
- :mod:`.rehearsal`: a trainee's attempt: its views, setup, state and score.

Their JSON forms live at the file boundary: :mod:`fluoroplan.io.analysis_json`,
:mod:`fluoroplan.io.plan_json` (checked against ``resources/*.schema.json``) and
:mod:`fluoroplan.io.rehearsal_json`.
"""
