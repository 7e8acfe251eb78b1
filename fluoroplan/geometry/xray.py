"""The X-ray physics of the simulated fluoroscopy: attenuation at an effective energy, the
photons a detector pixel counts, and the imaging chain's settings.

**Attenuation.** A CT number is measured at the CT's effective energy (about 70 keV for a
120 kVp beam); fluoroscopy of the spine runs at 70-85 kVp with copper filtration, an
effective energy of about 50 keV, where bone attenuates relatively more than water (its
calcium's photoelectric effect grows as the energy falls). Each voxel is modelled as water
scaled by density up to ``SOFT_TISSUE_MAX_HU`` (air, lung, fat, soft tissue, blood), and above
it as soft tissue plus cortical bone mineral, the bone fraction read from the CT number at the
CT's energy::

    mu(E) = mu_w(E) (1 + HU/1000)                               HU <= HU_s
    mu(E) = (1 - f) mu_w(E) (1 + HU_s/1000) + f mu_b(E),        f = (HU - HU_s) / (HU_b - HU_s)

``HU_b`` being the CT number of ICRU-44 cortical bone at the CT's energy (about 1590 HU): soft
tissue keeps its CT contrast, and cortical bone attenuates as cortical bone does at the
fluoroscopic energy (about 1.6 times its CT contrast to water at 50 keV). Metal
(``HU >= TITANIUM_MIN_HU``: CT numbers of metal are clipped and
streaky) attenuates as titanium. Mass attenuation coefficients: NIST XCOM, Hubbell & Seltzer,
*Tables of X-Ray Mass Attenuation Coefficients* (NISTIR 5632, NIST Standard Reference Database
126): water (liquid), bone, cortical (ICRU-44, 1.92 g/cm3), titanium (4.506 g/cm3);
interpolated log-log between the tabulated energies.

**Photons.** A detector pixel behind the patient receives ``N = N0 exp(-integral mu dl)``
photons (Beer-Lambert); the automatic exposure control keeps the dose at the detector at its
set point, so the pixels of median attenuation in the collimated field receive the set
point's photons. Photons per mm2 per nGy of air kerma at the effective energy:
``1 / (E (mu_en/rho)_air)`` (NIST: (mu_en/rho)_air = 0.04098 cm2/g at 50 keV, about 30.5
photons per mm2 per nGy). A flat-panel fluoroscopy frame is about 30-60 nGy at the detector
(pulsed fluoroscopy; AAPM Report 125 and the detector dose ranges it cites); the detective
quantum efficiency (about 0.65 at low frequencies for CsI panels) scales the counted quanta.

This module imports only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CT_EFFECTIVE_KEV",
    "FLUORO_EFFECTIVE_KEV",
    "FRAME_DOSE_NGY",
    "ImagingChain",
    "SOFT_TISSUE_MAX_HU",
    "bone_ct_number",
    "mu_per_mm",
    "photons_per_mm2_per_ngy",
]

CT_EFFECTIVE_KEV = 70.0
"""Effective energy of a 120 kVp CT beam (the energy its CT numbers refer to)."""
FLUORO_EFFECTIVE_KEV = 50.0
"""Effective energy of a spine fluoroscopy beam (70-85 kVp, copper filtered)."""
SOFT_TISSUE_MAX_HU = 100.0
"""CT numbers up to this are density-scaled water (soft tissue, blood, fat, lung, air)."""
FRAME_DOSE_NGY = 40.0
"""Air kerma at the detector per fluoroscopy frame (the exposure control's set point)."""
DQE = 0.65
"""Detective quantum efficiency of a CsI flat panel at low spatial frequency."""

_KEV = np.array([40.0, 50.0, 60.0, 80.0, 100.0])
_MASS_ATTENUATION_CM2_G = {  # NIST XCOM / NISTIR 5632, mu/rho at _KEV
    "water": np.array([0.2683, 0.2269, 0.2059, 0.1837, 0.1707]),
    "cortical bone": np.array([0.6655, 0.4242, 0.3148, 0.2229, 0.1855]),
    "titanium": np.array([2.214, 1.213, 0.7661, 0.4052, 0.2721]),
}
_DENSITY_G_CM3 = {"water": 1.0, "cortical bone": 1.92, "titanium": 4.506}
_AIR_MU_EN_CM2_G = {50.0: 0.04098, 60.0: 0.03041, 40.0: 0.06947, 80.0: 0.02407}
_KEV_TO_J = 1.602176634e-16


def mu_per_mm(material: str, kev: float) -> float:
    """Linear attenuation (1/mm) of ``"water"``, ``"cortical bone"`` or ``"titanium"`` at an
    energy between 40 and 100 keV (log-log interpolation of the NIST table)."""
    if material not in _MASS_ATTENUATION_CM2_G:
        raise ValueError(f"no attenuation table for {material!r}; known: "
                         f"{', '.join(_MASS_ATTENUATION_CM2_G)}")
    if not _KEV[0] <= kev <= _KEV[-1]:
        raise ValueError(f"effective energy {kev} keV is outside the tables' "
                         f"{_KEV[0]:.0f}-{_KEV[-1]:.0f} keV")
    mass = float(np.exp(np.interp(np.log(kev), np.log(_KEV),
                                  np.log(_MASS_ATTENUATION_CM2_G[material]))))
    return mass * _DENSITY_G_CM3[material] / 10.0


def bone_ct_number(ct_kev: float = CT_EFFECTIVE_KEV) -> float:
    """The CT number of cortical bone (ICRU-44) at the CT's effective energy (about 1590)."""
    return 1000.0 * (mu_per_mm("cortical bone", ct_kev) / mu_per_mm("water", ct_kev) - 1.0)


def photons_per_mm2_per_ngy(kev: float = FLUORO_EFFECTIVE_KEV) -> float:
    """Photon fluence per air kerma at a monoenergetic ``kev`` (1 / (E mu_en/rho of air))."""
    kevs = np.array(sorted(_AIR_MU_EN_CM2_G))
    mu_en = float(np.exp(np.interp(np.log(kev), np.log(kevs),
                                   np.log([_AIR_MU_EN_CM2_G[k] for k in kevs]))))
    gy_cm2 = mu_en * 1000.0 * kev * _KEV_TO_J  # air kerma (Gy) per photon per cm2
    return 1.0 / gy_cm2 * 1e-9 / 100.0  # per nGy, per mm2


@dataclass(frozen=True)
class ImagingChain:
    """How the simulated fluoroscope makes its image.

    Attributes
    ----------
    kev : float
        Effective energy of the beam (the attenuation volume is built for it).
    collimator : str
        ``"round"`` (a circle of the detector's short side) or ``"rect"`` (the whole square):
        the field outside is black, and the exposure control reads only inside it.
    frame_dose_ngy : float or None
        Air kerma per frame at the detector (quantum noise); None: noise-free (the plan's
        images, so the landmarks are legible; the rehearsal's images carry the noise).
    edge_enhance, edge_sigma_mm : float
        The chain's unsharp mask: strength, and its blur in mm at the detector.
    """

    kev: float = FLUORO_EFFECTIVE_KEV
    collimator: str = "round"
    frame_dose_ngy: float | None = None
    edge_enhance: float = 0.7
    edge_sigma_mm: float = 1.5

    def __post_init__(self) -> None:
        if self.collimator not in ("round", "rect"):
            raise ValueError(f"collimator must be 'round' or 'rect', got {self.collimator!r}")
        if self.frame_dose_ngy is not None and not self.frame_dose_ngy > 0:
            raise ValueError(f"the frame dose must be positive, got {self.frame_dose_ngy}")

    def with_noise(self, frame_dose_ngy: float = FRAME_DOSE_NGY) -> ImagingChain:
        return ImagingChain(self.kev, self.collimator, frame_dose_ngy, self.edge_enhance,
                            self.edge_sigma_mm)
