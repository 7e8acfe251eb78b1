"""The printed plan that goes into the angiosuite (:mod:`.pdf`) and its teaching copy without
patient data (:mod:`.teaching`). Uses the planner, geometry and io; nothing below imports it."""
