"""The domain model: what fluoroplan reasons about, as frozen dataclasses in LPS mm and degrees,
with no Qt and no files.

:mod:`.plan` holds the needle, the target, the safety check, the trajectory, the "no safe
trajectory" result and the plan. Their JSON forms live at the file boundary
(:mod:`fluoroplan.io.plan_json`, checked against ``resources/plan.schema.json``).
"""
