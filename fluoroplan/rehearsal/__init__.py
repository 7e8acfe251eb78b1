"""Trainee rehearsal of a planned case: the session state machine (:mod:`.session`), its
scoring against the plan (:mod:`.score`) and the summary of saved sessions (:mod:`.summary`).
Uses the planner, geometry and io; only the app and the commands import it."""
