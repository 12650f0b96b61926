"""Where a number came from: device, git commit, time; and atomic JSON writes."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess


def device_description() -> str:
    """E.g. ``"cpu: AMD EPYC (2 logical cores)"`` or ``"gpu: NVIDIA H100 80GB HBM3 x1"``."""
    import jax  # here, so that dataset-generation workers importing this module skip JAX

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
            cpu = names[0] if names else cpu
        except OSError:
            pass
        return f"cpu: {cpu} ({os.cpu_count()} logical cores)"
    return f"{dev.platform}: {getattr(dev, 'device_kind', dev.platform)} x{jax.device_count()}"


def git_commit() -> str | None:
    """The commit of the checkout ``rql_lite`` runs from, with ``+dirty`` for uncommitted changes."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=here)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=here)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: str, payload: dict) -> None:
    """Write JSON to a temporary file beside ``path``, then rename: never a half-written file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
