"""Arguments every real-network command shares: the data folder, downloads, workload, device.

One home for their help texts and checks (``validate run``, ``validate branch``,
``validate estimate``, the main job).
"""

from __future__ import annotations

import os
from pathlib import Path

from surgelab.config import ConfigError


def _env_download() -> bool:
    # The one place $SURGELAB_DOWNLOAD is read: as the source of --download's default (the
    # resolved value is recorded in config.json and passed down as an argument).
    return os.environ.get("SURGELAB_DOWNLOAD", "").strip().lower() in {"1", "true", "yes"}


DOWNLOAD_WHY = (
    "fetch a missing dataset from its official URL into the user cache (checksum-verified; "
    "default from $SURGELAB_DOWNLOAD)"
)
DATA_DIR_WHY = (
    "dataset folder, used alone (default: $SURGELAB_DATA, then the user cache, then a "
    "checkout's ../shared/data)"
)


# ----------------------------------------------------------------------------- shared checks


def device_name(device: str, arg: str = "device") -> str:
    """A readable name of a torch device; ``ConfigError`` naming ``arg`` if torch does not
    know the string or the CUDA GPU it names is not there."""
    import platform

    if device != "cpu":
        import torch

        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ConfigError(
                arg, f"{device!r} is not a torch device; use cpu, cuda or cuda:<index>"
            ) from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(
                    arg,
                    f"{device}: torch sees no CUDA GPU (use --device cpu, or install a CUDA "
                    "build of torch)",
                )
            n = torch.cuda.device_count()
            if dev.index is not None and dev.index >= n:
                raise ConfigError(
                    arg, f"{device}: torch sees {n} CUDA GPU(s); use cuda:0 … cuda:{n - 1}"
                )
            return f"{device} ({torch.cuda.get_device_name(dev)})"
        if dev.type != "cpu":
            raise ConfigError(arg, f"{device!r}: only cpu and cuda devices are supported")
    return f"{device} ({platform.processor() or platform.machine()})"


def check_workload(workload: str, arg: str = "workload") -> None:
    from validate.workload import available

    if workload not in available():
        raise ConfigError(
            arg, f"unknown workload {workload!r}; choose one of {', '.join(available())}"
        )


def check_data(workload: str, size: str, data_dir: str | None, download: bool) -> None:
    """The workload's datasets are where they will be looked for (``--data-dir`` alone when
    given), before any run folder is made. ``ConfigError`` naming ``--data-dir``."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise ConfigError(
            "data_dir",
            f"{data_dir!r} is not an existing folder; give the folder that holds the datasets "
            "(or leave --data-dir out to use $SURGELAB_DATA / the user cache)",
        )
    from validate import data as vdata
    from validate.workload import get_workload

    for name in get_workload(workload, size=size).datasets:
        try:
            vdata.find_dataset(name, data_dir, verify=False)
        except vdata.DataNotFoundError as exc:
            if download and data_dir is None:
                continue  # fetched into the cache when the run starts (surgelab.datasets)
            note = (
                "; --download fetches into the user cache, which is searched only without "
                "--data-dir"
                if download
                else ""
            )
            raise ConfigError("data_dir", f"{exc}{note}") from None
