"""How large a volume fluoroplan loads, checked before anything is allocated.

A header can claim any size (65535 x 65535 pixels, slices a kilometre apart); loaders compute
the size a series implies and refuse it beyond ``MAX_GRID`` or beyond the memory free now.
"""

from __future__ import annotations

__all__ = ["MAX_GRID", "available_memory"]

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
