"""evaluate_many: R agents x E episodes at once, equal to evaluate (its one-slot case) run by run;
workers; recorded frames; errors. Most tests use a cheap fake env (``conftest.fake_env``)."""
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import interrupted_at_call

import rql_lite.ogbench.evaluate as evaluate_module
from rql_lite.agent import AgentConfig
from rql_lite.ogbench.evaluate import eval_pool, evaluate, evaluate_many, make_eval_env
from rql_lite.train import init_states, unstack

CUBE = ["cube-single-play-singletask-task1-v0", "cube-single-play-singletask-task2-v0"]  # obs 28, action 5
FAKE = "fake_eval_env:FakeReach-v0"  # registered by the fake_env fixture (conftest), which these tests use
KEYS = ("success_rate", "successes", "returns", "episode_lengths")


def tiny_config():
    return AgentConfig(obs_dim=28, action_dim=5, horizon=5, policy_hidden=(32,), value_hidden=(32,), num_values=2)


@pytest.fixture(scope="module")
def states(fake_env):
    """Three runs of a fresh tiny agent (different init seeds, so different policies)."""
    assert fake_env == FAKE
    return init_states(tiny_config(), [0, 1, 2])[0]


def serial(make_env, tasks, states, episodes, seeds, max_steps):
    return [evaluate(make_env(task), unstack(states, r), episodes, seed=seeds[r], max_steps=max_steps)
            for r, task in enumerate(tasks)]


def assert_same(got, want):
    assert len(got) == len(want)
    for r, (g, w) in enumerate(zip(got, want)):
        for key in KEYS:
            assert g[key] == w[key], (r, key, g[key], w[key])  # exactly: same floats, same steps


@pytest.fixture(scope="module")
def fake_reference(states):
    tasks, seeds = [FAKE] * 3, [3, 1000, 3]  # runs 0 and 2 share a seed: same env starts, other policies
    return tasks, seeds, serial(gymnasium.make, tasks, states, 4, seeds, 40)


def test_the_fake_reference_varies(fake_reference):
    """The comparison below can fail: successes, returns and lengths all differ between episodes."""
    _, _, want = fake_reference
    successes = [s for w in want for s in w["successes"]]
    lengths = [n for w in want for n in w["episode_lengths"]]
    returns = [x for w in want for x in w["returns"]]
    assert 0 < sum(successes) < len(successes)
    assert min(lengths) < 40 and max(lengths) == 40  # some terminate inside a chunk, others hit max_steps
    assert len(set(returns)) == len(returns)


@pytest.mark.parametrize("workers, max_envs", [(1, None), (2, None), (2, 5)])
def test_equals_evaluate_on_a_fake_env(states, fake_reference, workers, max_envs, monkeypatch):
    """In this process and in 2 workers; max_envs=5 runs the 12 episodes in 4 waves of 3 envs
    (episodes then reuse envs of earlier ones). The default max_envs follows the memory available:
    plenty of it here, so that the default is one wave whatever else runs on the machine."""
    monkeypatch.setattr(evaluate_module, "_available_memory", lambda: 64 * 2**30)
    tasks, seeds, want = fake_reference
    timings = {}
    got = evaluate_many(tasks, states, 4, seeds, max_steps=40, workers=workers, max_envs=max_envs, timings=timings)
    assert_same(got, want)
    assert timings["waves"] == (4 if max_envs else 1) and timings["envs"] == (3 if max_envs else 12)
    if workers == 2:
        assert timings["workers"] == 2
        assert [w["jax_imported"] for w in timings["worker_info"]] == [False, False]  # gymnasium/env code only
        assert multiprocessing.active_children() == []  # shut down before returning
        for info in timings["worker_info"]:
            assert not os.path.exists(f"/proc/{info['pid']}") or _is_zombie_free(info["pid"])


def _is_zombie_free(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return True


def test_time_limit_and_no_max_steps(states):
    """Without max_steps the env's own time limit (45 steps, not a multiple of h=5) ends episodes."""
    seeds = [7, 8]
    want = serial(gymnasium.make, [FAKE] * 2, unstack_two(states), 2, seeds, None)
    got = evaluate_many([FAKE] * 2, unstack_two(states), 2, seeds, workers=1)
    assert_same(got, want)
    assert max(n for w in want for n in w["episode_lengths"]) == 45


def unstack_two(states):
    return jax.tree_util.tree_map(lambda x: x[:2], states)


def test_equals_evaluate_on_two_cube_tasks_frames_included(states):
    """Real OGBench envs, two tasks of one domain, in 2 workers that record the first episode's
    frames (and in this process, one wave of one episode per run, so the second episode of each run
    reuses an env). The frames are the ones evaluate records, bitwise."""
    two = unstack_two(states)
    seeds = [11, 12]
    want = [evaluate(make_eval_env(task, render=True), unstack(two, r), 2, seed=seeds[r], max_steps=30,
                     video_episodes=1, video_every=10) for r, task in enumerate(CUBE)]
    got = evaluate_many(CUBE, two, 2, seeds, max_steps=30, workers=2, video_episodes=1, video_every=10)
    assert_same(got, want)
    for g, w in zip(got, want):
        assert len(g["frames"]) == len(w["frames"]) == 1 and w["frames"][0].shape == (1 + 30 // 10, 200, 200, 3)
        np.testing.assert_array_equal(g["frames"][0], w["frames"][0])
    assert_same(evaluate_many(CUBE, two, 2, seeds, max_steps=30, workers=1, max_envs=2), want)


def test_the_vmapped_policy_call_is_close(states, fake_reference):
    """exact=False batches every slot in one vmapped product: equal up to last-bit rounding."""
    tasks, seeds, want = fake_reference
    got = evaluate_many(tasks, states, 4, seeds, max_steps=40, workers=1, exact=False)
    for g, w in zip(got, want):
        assert len(g["returns"]) == 4 and g["episode_lengths"] == w["episode_lengths"]
        np.testing.assert_allclose(g["returns"], w["returns"], rtol=1e-4)


def test_zero_episodes_starts_nothing(states):
    assert evaluate_many(["no-such-task"] * 3, states, 0, [0, 1, 2]) == [
        {"success_rate": 0.0, "successes": [], "returns": [], "episode_lengths": [], "frames": []}] * 3


def test_bad_arguments(states):
    tasks, seeds = [FAKE] * 3, [0, 1, 2]
    with pytest.raises(ValueError, match=r"states holds 3 runs but tasks has 2 and seeds 3"):
        evaluate_many(tasks[:2], states, 1, seeds)
    with pytest.raises(ValueError, match=r"seeds 2 entries"):
        evaluate_many(tasks, states, 1, seeds[:2])
    with pytest.raises(ValueError, match=r"stacked runs.*evaluate\(env, state"):
        evaluate_many(tasks[:1], unstack(states, 0), 1, seeds[:1])
    with pytest.raises(ValueError, match=r"list of task names"):
        evaluate_many(FAKE, states, 1, seeds)
    with pytest.raises(ValueError, match=r"seeds must be a list"):
        evaluate_many(tasks, states, 1, 5)
    with pytest.raises(ValueError, match=r"seeds\[1\] must be an integer"):
        evaluate_many(tasks, states, 1, [0, 1.5, 2])
    with pytest.raises(ValueError, match="num_episodes"):
        evaluate_many(tasks, states, -1, seeds)
    with pytest.raises(ValueError, match="max_steps"):
        evaluate_many(tasks, states, 1, seeds, max_steps=0)
    with pytest.raises(ValueError, match="workers"):
        evaluate_many(tasks, states, 1, seeds, workers=-2)
    with pytest.raises(ValueError, match="max_envs"):
        evaluate_many(tasks, states, 1, seeds, max_envs=0)
    with pytest.raises(ValueError, match="video_every must be an integer >= 1"):
        evaluate_many(tasks, states, 1, seeds, video_episodes=1, video_every=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_unknown_task(states, workers):
    with pytest.raises(ValueError, match=r"tasks\[1\] = 'cube-single-play-singletask-task9-v0' .*OGBench task name"):
        evaluate_many([FAKE, "cube-single-play-singletask-task9-v0", FAKE], states, 1, [0, 1, 2], workers=workers)
    assert multiprocessing.active_children() == []


def test_dims_that_do_not_fit(states):
    wrong = states.replace(config=states.config.replace(obs_dim=31))
    with pytest.raises(ValueError, match=r"tasks\[0\]: env FakeReach-v0 has observations .*obs_dim=31.*another task"):
        evaluate_many([FAKE] * 3, wrong, 1, [0, 1, 2], workers=1)
    wrong = states.replace(config=states.config.replace(action_dim=4))
    with pytest.raises(ValueError, match=r"action_dim=4.*another task"):
        evaluate_many([FAKE] * 3, wrong, 1, [0, 1, 2], workers=1)


def test_non_finite_actions(states):
    bad = states.replace(ema_policy_params=jax.tree_util.tree_map(
        lambda p: p.at[1].set(jnp.nan), states.ema_policy_params))  # run 1 diverged
    with pytest.raises(FloatingPointError, match=r"run 1 .*non-finite actions at step 0 of episode 0"):
        evaluate_many([FAKE] * 3, bad, 2, [0, 1, 2], workers=1)


def test_a_failing_worker_is_reported_and_all_workers_end(states):
    with pytest.raises(RuntimeError, match=r"(?s)env worker \d .*failed during 'step'.*FakeBroken failed on purpose"):
        evaluate_many(["fake_eval_env:FakeBroken-v0"] * 3, states, 2, [0, 1, 2], max_steps=20, workers=2)
    assert multiprocessing.active_children() == []


def test_an_interrupt_in_the_parent_ends_the_workers(states, monkeypatch):
    """KeyboardInterrupt (Ctrl-C) while the workers hold envs: it propagates, and no worker is left."""
    monkeypatch.setattr(evaluate_module, "_policy_chunks", interrupted_at_call(evaluate_module._policy_chunks, 2))
    with pytest.raises(KeyboardInterrupt):
        evaluate_many([FAKE] * 3, states, 2, [0, 1, 2], max_steps=20, workers=2)
    assert multiprocessing.active_children() == []


def test_ctrl_c_of_the_process_group_leaves_no_process(tmp_path):
    """A real Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during an
    evaluation in 2 workers: the program ends with KeyboardInterrupt and its workers end too."""
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})  # fake_eval_env
        import fake_eval_env
        import rql_lite.ogbench.evaluate as ev
        from rql_lite.agent import AgentConfig
        from rql_lite.train import init_states
        states = init_states(AgentConfig(obs_dim=28, action_dim=5, horizon=5, policy_hidden=(8,),
                                         value_hidden=(8,), num_values=2), [0, 1])[0]
        real = ev._policy_chunks
        def slow(*args):  # the first call announces the workers, then the evaluation stalls here
            import multiprocessing
            print("WORKERS", *[p.pid for p in multiprocessing.active_children()], flush=True)
            time.sleep(600)
        ev._policy_chunks = slow
        ev.evaluate_many(["fake_eval_env:FakeReach-v0"] * 2, states, 1, [0, 1], workers=2)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                            # as a terminal's process has it, even when this test runs in a background job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert line.startswith("WORKERS"), proc.stderr.read()
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) == 2
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=300)  # it ends within seconds; more only stops a hang
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived its parent"


def test_a_pool_is_reused_across_evaluations(states, fake_reference):
    """eval_pool keeps the workers and envs between evaluations (as a training run would)."""
    tasks, seeds, want = fake_reference
    with eval_pool(tasks, 4, workers=2, max_envs=6) as pool:  # 2 episodes of each run per wave
        pids = [w["pid"] for w in pool.worker_info]
        assert_same(evaluate_many(tasks, states, 4, seeds, max_steps=40, pool=pool), want)
        again = evaluate_many(tasks, states, 3, seeds, max_steps=40, pool=pool, timings=(timings := {}))
        assert [w["pid"] for w in timings["worker_info"]] == pids and timings["startup_s"] == 0.0
        assert [g["returns"] for g in again] == [w["returns"][:3] for w in want]
        with pytest.raises(ValueError, match=r"render=True"):  # this pool's envs do not render
            evaluate_many(tasks, states, 1, seeds, pool=pool, video_episodes=1)
        with pytest.raises(ValueError, match=r"pool holds envs for tasks .*eval_pool\(tasks"):
            evaluate_many(tasks[:2], unstack_two(states), 1, seeds[:2], pool=pool)
    assert multiprocessing.active_children() == []
    with pytest.raises(ValueError, match="was closed"):
        evaluate_many(tasks, states, 1, seeds, pool=pool)


def test_default_workers(fake_env, monkeypatch):
    """One worker per core, but none with fewer than MIN_ENVS_PER_WORKER (4) envs: then this process."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(evaluate_module, "_available_memory", lambda: 64 * 2**30)  # memory does not limit B here
    with eval_pool([FAKE] * 3, 2) as pool:  # 6 envs: one worker would be all of them
        assert pool.local is not None and pool.worker_info == []
    with eval_pool([FAKE] * 3, 4) as pool:  # 12 envs: one worker per core
        assert pool.num_workers == 2 and len(pool.worker_info) == 2 and pool.local is None
    with eval_pool([FAKE] * 3, 4, workers=3, max_envs=3) as pool:  # asked for: 3 workers of 1 env each
        assert pool.num_workers == 3 and pool.per_wave == 1
    assert multiprocessing.active_children() == []
