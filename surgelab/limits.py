"""What the machine can hold: size arguments are bounded before any work starts."""

from __future__ import annotations

import os

from surgelab.config import ConfigError

#: the share of the available memory one command may plan to use
MEMORY_FRACTION = 0.5


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"


def check_memory(nbytes: float, arg: str, what: str) -> None:
    """Refuse a plan that needs more than :data:`MEMORY_FRACTION` of the available memory.

    Raises:
      ConfigError: naming ``arg`` (a config field name), the need and what is available.
    """
    avail = available_memory()
    if nbytes > MEMORY_FRACTION * avail:
        raise ConfigError(
            arg,
            f"needs about {human(nbytes)} for {what}, more than {MEMORY_FRACTION:.0%} of the "
            f"{human(avail)} available here; lower it",
        )


def check_work(units: float, limit: float, arg: str, what: str) -> None:
    """Refuse a plan of more than ``limit`` units of work (e.g. samples x coordinates)."""
    if units > limit:
        raise ConfigError(
            arg,
            f"asks for {units:.3g} {what}, more than the {limit:.3g} this command allows; lower it",
        )
