"""How large a volume fluoroplan loads, checked before anything is allocated.

A header can claim any size (65535 x 65535 pixels, slices a kilometre apart); loaders compute
the size a series implies and refuse it beyond ``MAX_GRID`` or beyond the memory free now.
"""

from __future__ import annotations

from fluoroplan.io.errors import TooLarge

__all__ = ["MAX_GRID", "available_memory", "check_volume_size"]

# Largest volume loaded (voxels along i, j, k).
MAX_GRID = (2048, 2048, 4000)
# Share of the free memory one load may use (the rest is left to the analysis and the OS).
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fp:
            for line in fp:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_volume_size(grid_ijk, need_bytes: int, what: str) -> None:
    """Refuse, before allocating, a volume of ``grid_ijk`` voxels beyond ``MAX_GRID`` or
    needing ``need_bytes`` beyond the memory share free now. ``what`` names it for the user
    (e.g. "the series 2 'Spine'", "the NIfTI file ct.nii.gz")."""

    grid = [int(v) for v in grid_ijk]
    if any(g > m for g, m in zip(grid, MAX_GRID, strict=True)):
        gib = grid[0] * grid[1] * grid[2] * 2 / 2**30
        raise TooLarge(
            f"{what[:1].upper()}{what[1:]} would make a volume of {grid[0]} x {grid[1]} x "
            f"{grid[2]} voxels ({gib:,.1f} GiB); fluoroplan loads at most {MAX_GRID[0]} x "
            f"{MAX_GRID[1]} x {MAX_GRID[2]}. The image size or slice positions in its header are "
            "probably wrong; export or convert the CT again, or choose a series of normal size."
        )
    free = available_memory()
    if free is not None and need_bytes > MEMORY_SHARE * free:
        raise TooLarge(
            f"Loading {what} needs {need_bytes / 2**30:.1f} GiB of memory and this computer has "
            f"{free / 2**30:.1f} GiB free. Close other programs, or load it on a workstation "
            "with more memory."
        )
