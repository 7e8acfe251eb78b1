"""fluoroplan: plan fluoroscopically guided cement augmentation of an instrumented spine on CT.

Sub-packages, each importing only those listed below it (``docs/architecture.md``):

- ``cli``, ``commands``: the ``fluoroplan`` command and its sub-commands.
- ``app``: the Qt workstation (the only place that imports Qt).
- ``report``: the plan PDF and its teaching copy; ``rehearsal``: trainee rehearsal.
- ``planner``: targets, approaches, safety checks, proposals.
- ``segmentation``: implants and anatomy found on the CT.
- ``io``: DICOM / NIfTI loading into :class:`fluoroplan.io.CTVolume`, file formats and their
  JSON Schemas; ``resources`` beside it: the synthetic phantom, the demo case, the schemas.
- ``model``: the plan's objects as frozen dataclasses (no Qt, no files).
- ``geometry``: frames, angle conventions, the C-arm and projection model.
- ``errors``: the base of every error a user reads.
"""

__version__ = "0.1.0"
