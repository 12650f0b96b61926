"""Run records: the schema, the writer and the reader of one (task, seed)'s result file.

``python -m rql_lite train`` writes one record per (task, seed) into its run directory,
``records/seed{S}.json`` (``records/{task}/seed{S}.json`` when the run trained several tasks),
at every save and at the end. A record (schema ``rql_lite-run-record-v1``) says what ran and what
came out: task, agent, the method's name in tables, seed, steps done and targeted, whether it
finished, the effective config, the dataset and its sha256, the evaluation episodes, the success
curve, the git commit, the device, the wall time and the command. Results tables
(``rql_lite.runs.report``) are built from records only.

``make_record`` builds the dict (the one place its fields are listed), ``write_record`` writes it
atomically, and ``Record.from_file`` / ``find_records`` read them back, records written by
earlier versions included (fields added since take their defaults).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os

from rql_lite.agent import METHOD_NAMES, complete_config_dict
from rql_lite.files import utc_now, write_json_atomic

RECORD_SCHEMA = "rql_lite-run-record-v1"


def default_results_dir() -> str:
    """``results/`` of the checkout this package runs from (a clone or an editable install),
    else ``results`` under the working directory or its parent (a notebook in ``notebooks/``)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # rql_lite/, above runs/
    here = os.path.join(os.path.dirname(package), "results")
    for candidate in (here, "results", os.path.join("..", "results")):
        if os.path.isdir(candidate):
            return candidate
    return here


# --------------------------------------------------------------------------- writing


def make_record(*, task: str, agent: str, method: str, seed: int, steps: int, target_steps: int, finished: bool,
                profile: str, config: dict, dataset: dict, eval_episodes: int, success_curve: list[dict],
                git_commit: str | None, device: str, wall_time_s: float, command: str, runs_in_program: int = 1,
                num_seeds_in_run: int = 1, runs_batching: str | None = None,
                tasks_in_program: list[str] | None = None) -> dict:
    """One (task, seed)'s record as a JSON-able dict.

    ``config``: the effective ``AgentConfig`` as ``rql_lite.agent.config_dict`` gives it; ``dataset``:
    ``source``, ``path``, ``sha256``, ``num_transitions``; ``success_curve``: one dict per evaluation,
    ``step``, ``success_rate``, ``episodes``, ``wall_time_s``. ``runs_batching``: how the program ran
    its runs (``"map"``, one after another on a CPU, or ``"vmap"``); ``tasks_in_program``: the tasks
    trained together, for a run of several. ``final_success_rate`` (the curve's last point, ``None``
    before the first evaluation), ``schema`` and ``updated`` (now) are added.
    """
    record = {
        "schema": RECORD_SCHEMA, "task": task, "agent": agent, "method": method, "seed": int(seed),
        "steps": int(steps), "target_steps": int(target_steps), "finished": bool(finished), "profile": profile,
        "config": config, "dataset": dataset, "eval_episodes": eval_episodes, "success_curve": list(success_curve),
        "final_success_rate": success_curve[-1]["success_rate"] if success_curve else None,
        "git_commit": git_commit, "device": device, "wall_time_s": round(float(wall_time_s), 2),
        "num_seeds_in_run": int(num_seeds_in_run), "runs_in_program": int(runs_in_program),
        "command": command, "updated": utc_now(),
    }
    if runs_batching is not None:
        record["runs_batching"] = runs_batching
    if tasks_in_program is not None:
        record["tasks_in_program"] = list(tasks_in_program)
    return record


def write_record(path: str, record: dict) -> None:
    """Write a record (``make_record``) atomically."""
    if record.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"not a run record (schema {RECORD_SCHEMA!r} expected); build it with make_record")
    write_json_atomic(path, record)


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class Record:
    """One (task, seed) of one run, as read from its record file."""

    path: str
    task: str
    method: str
    agent: str
    seed: int
    steps: int
    target_steps: int
    finished: bool
    success_rate: float | None
    eval_episodes: int
    config: dict
    dataset_source: str
    device: str
    command: str
    git_commit: str | None
    wall_time_s: float
    success_curve: tuple
    dataset_sha256: str | None = None  # the dataset files' hash: runs on regenerated data differ here

    @classmethod
    def from_file(cls, path: str) -> "Record":
        """Read and check one record file; ``ValueError`` naming the file if it is not a run record."""
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read run record {path}: {err}") from None
        if not isinstance(raw, dict) or raw.get("schema") != RECORD_SCHEMA:
            raise ValueError(f"{path} is not an rql_lite run record (schema {RECORD_SCHEMA!r} expected); "
                             f"move it out of the results directory")
        try:
            return cls(
                path=path, task=raw["task"], method=raw.get("method") or METHOD_NAMES.get(raw["agent"], raw["agent"].upper()), agent=raw["agent"],
                seed=int(raw["seed"]), steps=int(raw["steps"]), target_steps=int(raw["target_steps"]),
                finished=bool(raw["finished"]), success_rate=raw["final_success_rate"],
                eval_episodes=int(raw["eval_episodes"]), config=complete_config_dict(raw["config"]),
                dataset_source=raw["dataset"]["source"], device=raw["device"], command=raw["command"],
                git_commit=raw.get("git_commit"), wall_time_s=float(raw["wall_time_s"]),
                success_curve=tuple((int(p["step"]), float(p["success_rate"])) for p in raw["success_curve"]),
                dataset_sha256=raw["dataset"].get("sha256"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"run record {path} is missing or has a malformed field ({err!r})") from None


# Folders of results/ that hold a study with its own chapter, not rows of the reproduction tables: the horizon
# study (the K-sweep on scene, the point mazes and their pilots) varies settings that the tables would mix
# with the runs they compare.
STUDY_DIRS = ("horizon",)


def study_dir(name: str = "horizon") -> str:
    """``results/{name}``, where a study's runs are written and its chapter reads them."""
    return os.path.join(default_results_dir(), name)


def find_records(root: str | None = None, exclude: tuple[str, ...] = STUDY_DIRS) -> list[Record]:
    """Every record under ``root`` (default ``default_results_dir()``): ``**/records/**/seed*.json``, leaving out
    the folders ``exclude`` directly under ``root`` (by default the studies, ``STUDY_DIRS``; read one with
    ``find_records(study_dir(name))``)."""
    root = default_results_dir() if root is None else root
    paths = sorted(glob.glob(os.path.join(root, "**", "records", "**", "seed*.json"), recursive=True))
    skipped = tuple(os.path.join(root, name) + os.sep for name in exclude)
    return [Record.from_file(p) for p in paths if not p.startswith(skipped)]
