"""rql_lite.runs.records: which records the reproduction tables read."""
from __future__ import annotations

import os
import shutil

from rql_lite.runs import records


def test_study_records_stay_out_of_the_reproduction_tables(tmp_path):
    source = records.find_records()[0].path  # any committed record
    for folder in ("ogbench-cpu/x/records", "horizon/y/records"):
        os.makedirs(tmp_path / folder)
        shutil.copy(source, tmp_path / folder / "seed0.json")
    assert [r.path for r in records.find_records(str(tmp_path))] == [str(tmp_path / "ogbench-cpu/x/records/seed0.json")]
    assert len(records.find_records(str(tmp_path), exclude=())) == 2
    assert [r.path for r in records.find_records(str(tmp_path / "horizon"))] == [
        str(tmp_path / "horizon/y/records/seed0.json")]
