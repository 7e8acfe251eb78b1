"""fluoroplan: plan fluoroscopically guided cement augmentation of an instrumented spine on CT.

Sub-packages (dependencies point one way: ``app -> planner -> segmentation -> geometry``,
``io`` beside them and using only ``geometry``):

- ``geometry``: frames, angle conventions, the C-arm and projection model.
- ``io``: DICOM / NIfTI loading into :class:`fluoroplan.io.CTVolume`, file formats.
- ``segmentation``: implants and anatomy found on the CT.
- ``planner``: needles, trajectories, checks, proposals.
- ``app``: the Qt workstation (the only place that imports Qt).
- ``resources``: the synthetic demo phantom and bundled assets.
"""

__version__ = "0.1.0"
