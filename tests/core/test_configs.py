"""Task and domain names, in one place (rql_lite.configs): checked without OGBench, mapped to datasets."""
import pytest

from rql_lite import configs


def test_unknown_task_lists_close_names():
    with pytest.raises(ValueError, match="cube-double-play-singletask-task2-v0"):
        configs.check_task("cube-dubble-play-singletask-task2-v0")


def test_dataset_name_for_task():
    assert configs.dataset_name_for_task("cube-double-play-singletask-task2-v0") == "cube-double-play-v0"
    assert configs.dataset_name_for_task("scene-play-singletask-v0") == "scene-play-v0"
    assert configs.dataset_name_for_task("puzzle-4x4-play-oraclerep-v0") == "puzzle-4x4-play-v0"
    assert configs.dataset_name_for_task("cube-triple-play-v0") == "cube-triple-play-v0"


def test_task_names_and_domains_agree():
    assert configs.task_name("cube-double-play", 2) == "cube-double-play-singletask-task2-v0"
    assert len(configs.benchmark_tasks()) == 50 and set(configs.benchmark_tasks()) <= set(configs.known_tasks())
    for task in configs.known_tasks():
        assert configs.domain_of(task) + "-v0" == configs.dataset_name_for_task(task)
    assert configs.benchmark_tasks("scene-play") == configs.domain_tasks("scene-play")
    # The longest matching domain wins: puzzle-4x4-play is not puzzle-3x3-play.
    assert configs.domain_of("puzzle-4x4-play-singletask-task1-v0") == "puzzle-4x4-play"


@pytest.mark.parametrize("tasks, message", [
    ((), "give a task"),
    (("cube-single-play-singletask-task1-v0", "cube-single-play-singletask-task1-v0"), "distinct"),
    (("cube-single-play-singletask-task1-v0", "cube-double-play-singletask-task1-v0"), "share one dataset"),
    ((3,), "strings"),
])
def test_the_tasks_of_one_run_are_checked(tasks, message):
    with pytest.raises(ValueError, match=message):
        configs.check_tasks(tasks)
    assert configs.check_tasks("cube-single-play-singletask-task1-v0") == ("cube-single-play-singletask-task1-v0",)
