"""A sweep on a real one-node SLURM (``conftest.slurm_cluster``): a 2-element job array at the tiny size.

Each element's segments are far shorter than a dispatch (``--time 1 --margin-minutes 0.9999``: train
``--max-minutes 0.0001``), so every element stops after one dispatch, requeues itself with ``scontrol
requeue`` and is started again by SLURM until its run is finished. Both elements read one dataset that
neither finds on disk: they start together, one generates it, the other waits for it. At the end the
runs must equal uninterrupted runs of the same programs, bitwise, and ``sweep status`` and ``sweep
collect`` must say and copy exactly that.

SLURM holds a requeued job back about two minutes (its ``BeginTime``); a watcher thread starts such
jobs after a few seconds (``scontrol update StartTime=now``) to keep the test short. Production needs no
watcher.
"""
import json
import os
import re
import threading
import time

from support import QUIET, TASK, assert_same_outcome, cli, outcome, spec

from rql_lite.cli import main
from rql_lite.runs.experiment import run
from rql_lite.runs import slurm
from rql_lite.runs.records import find_records

WAIT_S = 240  # far more than the ~1-2 minutes the array takes on two busy cores


# Not at once: slurmd refuses to launch a job whose credential it revoked (at the requeue) in the same
# second as the new credential was made ("Job credential revoked": the element then ends FAILED and is
# never run again). SLURM's own hold of about two minutes is what keeps this from happening in production.
RELEASE_AFTER_S = 3


def _release_held_back_jobs(cluster, stop: threading.Event, released: list) -> None:
    held_since: dict[str, float] = {}
    while not stop.is_set():
        for line in cluster.queue():
            job, state, reason = line.split("|")
            if state == "PENDING" and reason == "BeginTime":
                since = held_since.setdefault(job, time.time())
                if time.time() - since >= RELEASE_AFTER_S:
                    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
                    released.append(job)
                    del held_since[job]
        stop.wait(0.5)


def test_a_job_array_is_stopped_requeued_and_ends_as_uninterrupted_runs(tmp_path, capsys, monkeypatch, slurm_cluster):
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    out, data = tmp_path / "sweep", tmp_path / "data"
    argv = ["sweep", "--out", str(out), "--tasks", TASK, "--agents", "rql", "tfql", "--seeds", "0", "1",
            "--profile", "smoke", "--steps", "40", "--eval-every", "20", "--save-every", "20", "--eval-episodes", "1",
            "--max-eval-steps", "20", "--dataset-episodes", "2", "--episode-length", "100", "--data-dir", str(data),
            "--set", "policy_hidden=16", "value_hidden=16", "num_values=2", "batch_size=16",
            "--time", "1", "--margin-minutes", "0.9999", "--cpus-per-task", "1"]
    stop, released = threading.Event(), []
    watcher = threading.Thread(target=_release_held_back_jobs, args=(slurm_cluster, stop, released), daemon=True)
    watcher.start()
    try:
        started = time.time()
        code, err = cli(capsys, *argv)
        assert code == 0, err
        sweep = json.loads((out / "sweep.json").read_text())
        job = sweep["submissions"][0]["job_id"]
        # Until both elements have ended and every record is finished, as seen twice in a row. squeue
        # --states=all, as sweep status asks: plain squeue does not list an element in the moment it is
        # REQUEUED, between two segments. The records too: in the instant between an element's requeue and
        # its next pending state, SLURM has once listed it (CI, 2 cores) as no longer active.
        ended = 0
        while ended < 2 and time.time() - started < WAIT_S:
            states = slurm.element_states([job])
            records = find_records(str(out / "runs"))
            done = len(records) == 4 and all(r.finished for r in records)
            ended = ended + 1 if done and len(states) == 2 and not any(map(slurm.is_active, states.values())) else 0
            time.sleep(1)
        elapsed = time.time() - started
    finally:
        stop.set()
        watcher.join()
    logs = {i: (out / "logs" / f"element{i}_job{job}.log").read_text() for i in (0, 1)}
    assert ended == 2, f"not ended after {WAIT_S} s: {slurm.element_states([job])}\n{logs}"
    assert slurm_cluster.queue() == []  # nothing left pending or running
    print(f"the array took {elapsed:.0f} s; requeued jobs started early: {released}")

    # Every element was stopped by its segment's limit, requeued by itself, and started again by SLURM.
    for i, log in logs.items():
        assert log.count("segment from step") == 2, log
        assert re.search(rf"unfinished at step 20 of 40: requeueing {job}_{i}\n", log), log
        assert f"job {job}_{i}, restart 1" in log and "finished: every record" in log, log
        assert "Traceback" not in log, log

    # The two elements needed one dataset that was not there: one generated it, the other used it.
    assert sum(log.count("not here yet; making it") for log in logs.values()) == 1, logs

    # The same programs, uninterrupted, on the same data: the same records and (bitwise) parameters.
    for i, agent in enumerate(("rql", "tfql")):
        reference = tmp_path / f"reference-{agent}"
        run(spec(reference, str(data), agent=agent), **QUIET)
        assert_same_outcome(out / "runs" / f"cube-single-play-{agent}", outcome(reference))
        assert sweep["elements"][i]["agent"] == agent

    # status: every (task, agent, seed) finished, with its element's state.
    capsys.readouterr()
    assert main(["sweep", "status", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.startswith(("0 ", "1 "))]
    assert sorted((r[0], r[2], r[3]) for r in rows) == [(e, a, s) for e, a in (("0", "rql"), ("1", "tfql"))
                                                       for s in ("0", "1")]
    for r in rows:
        assert r[1] == TASK and r[4] == "40/40" and r[5] == "yes" and r[6:] == [f"{job}_{r[0]}", "COMPLETED"], printed
    assert "4 of 4 runs finished" in printed

    # collect: the finished records and each run.json, where the results pages read them.
    results = tmp_path / "results"
    code, err = cli(capsys, "sweep", "collect", str(out), "--results", str(results))
    assert code == 0, err
    found = find_records(str(results))
    assert sorted((r.method, r.seed) for r in found) == [("RQL", 0), ("RQL", 1), ("TFQL", 0), ("TFQL", 1)]
    assert all(r.finished and r.steps == 40 for r in found)
    for agent in ("rql", "tfql"):
        assert (results / "sweep" / f"cube-single-play-{agent}" / "run.json").is_file()
    assert not os.path.exists(results / "sweep" / "cube-single-play-rql" / "checkpoint.msgpack")
