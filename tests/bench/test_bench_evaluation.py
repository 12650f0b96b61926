"""Evaluation speed (rql_lite.bench.evaluation): one episode at a time against all in lockstep, through the
bench command; the two must agree episode by episode."""
import json

from rql_lite.cli import main


def test_bench_times_evaluation_alone_and_refuses_to_measure_nothing(tmp_path, capsys):
    assert main(["bench", "--configs", "--out", str(tmp_path)]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    assert main(["bench", "--configs", "--eval-runs", "2", "--eval-episodes", "1", "--eval-max-steps", "5",
                 "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("bench-eval-*.json")
    record = json.loads(path.read_text())
    assert record["runs"] == 2 and record["episodes_per_run"] == 1 and record["agree"]
    assert record["serial"]["wall_s"] > 0 and record["batched"]["wall_s"] > 0
