"""The few SLURM commands a sweep needs, as functions: submit, requeue, and the state of array elements.

SLURM is driven through its command-line tools (``sbatch``, ``scontrol``, ``squeue``, ``sacct``), as
a user would drive it: no library, nothing to install on the nodes. A tool that is missing, or that
refuses, is a ``SlurmError`` (a ``ValueError``: one line, naming the tool and what it said).

An array element is named ``ARRAYJOB_INDEX`` (``"123_4"``). Its own job id (``SLURM_JOB_ID``) is
not a safe name: SLURM gives the array's id to one of its elements, so ``scontrol requeue 123``
from inside that element would requeue the whole array. ``element_id`` builds the safe name from
``SLURM_ARRAY_JOB_ID`` and ``SLURM_ARRAY_TASK_ID``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

TIMEOUT_S = 60  # a controller that does not answer in a minute is down for our purposes
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
                 "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD")


class SlurmError(ValueError):
    """A SLURM tool is missing or refused; the message names it and what it said."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SlurmError(f"{name} not found: this machine has no SLURM client. Run this where SLURM's commands "
                         f"are (a login node), or write the job script with --dry-run and submit it there")
    return path


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run([_tool(args[0]), *args[1:]], capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{args[0]} did not answer in {TIMEOUT_S} s; is the SLURM controller up? "
                         f"(scontrol ping)") from None
    if check and result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
        raise SlurmError(f"{args[0]} refused: {said[-1]}")
    return result


def available() -> bool:
    """Whether ``sbatch`` and ``squeue`` are on ``PATH`` (not whether a controller answers)."""
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def submit(script: str) -> str:
    """``sbatch`` the job script at ``script``; return the job id SLURM gave it (the array's id)."""
    out = _run(["sbatch", "--parsable", script]).stdout.strip()
    job = out.split(";")[0]  # --parsable prints "ID" or "ID;CLUSTER"
    if not re.fullmatch(r"\d+", job):
        raise SlurmError(f"sbatch printed {out!r}, not a job id; check the SLURM client's configuration")
    return job


def element_id(environ=None) -> str | None:
    """``ARRAYJOB_INDEX`` of the array element this process runs in, from SLURM's variables; ``None``
    outside an array job."""
    env = os.environ if environ is None else environ
    job, index = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{index}" if job and index else None


def requeue(element: str) -> None:
    """``scontrol requeue`` one array element (``ARRAYJOB_INDEX``): SLURM ends it now and queues it again.

    SLURM holds a requeued job back for a while (its ``BeginTime``, about two minutes), then starts
    it like any pending job. The job must be requeueable (``sbatch --requeue``).
    """
    if not re.fullmatch(r"\d+_\d+", element):
        raise ValueError(f"requeue takes an array element ARRAYJOB_INDEX, got {element!r}")
    _run(["scontrol", "requeue", element])


def element_states(job_ids) -> dict[tuple[str, int], str]:
    """``{(array job id, index): state}`` of every element of the given array jobs SLURM still knows.

    ``squeue --states=all`` first: pending, running and recently ended elements (until the
    controller forgets them, ``MinJobAge``, 5 minutes by default), with the reason a pending one
    waits (``"PENDING (BeginTime)"``). Then ``sacct`` for the rest, where accounting is kept. An
    element neither knows is absent from the result.
    """
    job_ids = [str(j) for j in job_ids]
    states: dict[tuple[str, int], str] = {}
    if not job_ids:
        return states
    listed = _run(["squeue", "--noheader", "--array", "--states=all", "--jobs=" + ",".join(job_ids),
                   "--format=%i|%T|%r"], check=False)
    for line in listed.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        key = _split_element(parts[0])
        if key is not None:
            state, reason = parts[1], parts[2]
            states[key] = f"{state} ({reason})" if state == "PENDING" and reason not in ("", "None") else state
    missing = [j for j in job_ids if not any(job == j for job, _ in states)]
    if missing and shutil.which("sacct"):
        accounted = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--jobs=" + ",".join(missing),
                          "--format=JobID,State"], check=False)
        if accounted.returncode == 0:
            for line in accounted.stdout.splitlines():
                parts = line.strip().split("|")
                key = _split_element(parts[0]) if len(parts) == 2 else None
                if key is not None and key not in states:
                    states[key] = parts[1].split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return states


def is_active(state: str | None) -> bool:
    """Whether an element in ``state`` (as ``element_states`` gives it) may still run."""
    return state is not None and state.split()[0] in ACTIVE_STATES


def _split_element(name: str) -> tuple[str, int] | None:
    """``"123_4"`` -> ``("123", 4)``; ``None`` for anything else (a pending range ``123_[0-3]`` is
    listed element by element with ``--array``)."""
    match = re.fullmatch(r"(\d+)_(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else None
