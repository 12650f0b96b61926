"""The environment side of ``evaluate.evaluate_many``: slices of envs stepped through action chunks.

JAX-free on purpose. A worker process does not import the ``rql_lite`` package (its
``__init__`` imports JAX): ``EnvPool`` starts each worker with ``runpy.run_path`` on this
file, so the worker imports numpy, gymnasium and OGBench (MuJoCo) only. In this process
the same ``EnvSlice`` class serves ``workers <= 1``.

An episode *slot* is one env. ``EnvSlice`` holds a contiguous block of slots and steps
each live one through its action chunk open-loop, exactly as ``evaluate.evaluate`` does:
``env.step`` per action, the reward summed as a Python float, the episode ending at
``terminated or truncated`` or at ``max_steps``; success is ``info["success"]`` at the
episode's last step.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
import traceback
import warnings

import numpy as np

WORKER_RUN_NAME = "__rql_lite_env_worker__"
FLOAT32_BOUNDS_WARNING = r".*precision lowered by casting to float32"


def prepare_for_envs() -> None:
    """Set this process up for OGBench envs; call it before ``ogbench`` or ``mujoco`` is imported.

    - On Linux, ``MUJOCO_GL=egl`` unless ``MUJOCO_GL`` is set. MuJoCo reads the variable once, when
      it is first imported; unset, it initialises GLFW, which needs a display and, without one,
      prints "The DISPLAY environment variable is missing" on stderr. EGL needs no display (Mesa's
      software rasteriser on a CPU machine, the driver's EGL on an NVIDIA one). An explicit choice is
      kept, and so is MuJoCo's if it was imported already (``ensure_headless_gl`` deals with that).
    - gymnasium's "precision lowered by casting to float32" warning is hidden, and only that one:
      OGBench's manipulation envs declare their bounds in float64 and build a new action space on
      every access (each reset calls it), so it would repeat all through a rollout. The cast is
      harmless here (observations and actions are float32 anyway). Every other warning still shows.
    """
    if sys.platform.startswith("linux") and "mujoco" not in sys.modules:
        os.environ.setdefault("MUJOCO_GL", "egl")
    warnings.filterwarnings("ignore", message=FLOAT32_BOUNDS_WARNING, category=UserWarning)


def make_env(task: str):
    """The env of ``task``: an OGBench task name (``ogbench.make_env_and_datasets(task,
    env_only=True)``, as ``evaluate.make_eval_env`` makes it), or gymnasium's
    ``"module:EnvId-v0"`` form (gymnasium imports ``module``, which registers ``EnvId-v0``)."""
    prepare_for_envs()
    if ":" in task:
        import gymnasium

        return gymnasium.make(task)
    import ogbench

    return ogbench.make_env_and_datasets(task, env_only=True)


def env_description(env) -> dict:
    """What ``evaluate._check_dims`` reads of an env: space shapes and the env's name."""
    obs_shape = getattr(env.observation_space, "shape", None)
    act_shape = getattr(env.action_space, "shape", None)
    return {"obs_shape": None if obs_shape is None else tuple(obs_shape),
            "action_shape": None if act_shape is None else tuple(act_shape),
            "name": getattr(getattr(env, "spec", None), "id", type(env).__name__)}


class EnvSlice:
    """The envs of slots ``0..len(tasks)-1`` of one worker (``tasks[i]``: slot i's task)."""

    def __init__(self, tasks):
        self.tasks = [str(t) for t in tasks]
        self.envs = []
        self.max_steps = None
        n = len(self.tasks)
        self.done = np.ones(n, bool)
        self.steps = [0] * n
        self.totals = [0.0] * n
        self.successes = [0] * n

    def build(self) -> dict:
        """Make every slot's env. Returns ``{"specs": [env_description per slot]}``, or
        ``{"task_error": (task, message)}`` for the first task that could not be made."""
        for task in self.tasks:
            try:
                self.envs.append(make_env(task))
            except Exception as err:  # gymnasium raises several types for unknown names
                return {"task_error": (task, f"{type(err).__name__}: {err}")}
        return {"specs": [env_description(env) for env in self.envs]}

    def reset(self, seeds, max_steps) -> np.ndarray:
        """Start an episode in each slot whose seed is not ``None`` (the others stay idle).

        ``seeds``: one ``env.reset`` seed or ``None`` per slot. Returns the observations,
        ``(slots, obs_dim)`` float64 (an idle slot's row is zeros).
        """
        self.max_steps = max_steps
        rows = []
        for i, (env, seed) in enumerate(zip(self.envs, seeds)):
            self.steps[i], self.totals[i], self.successes[i] = 0, 0.0, 0
            self.done[i] = seed is None
            rows.append(None if seed is None else np.asarray(env.reset(seed=int(seed))[0], np.float64))
        return self._stack(rows)

    def step(self, chunks: np.ndarray) -> dict:
        """Run each live slot's chunk ``chunks[i]`` (``(slots, h, d)``) open-loop.

        Returns ``obs (slots, obs_dim)`` (the observation after each slot's last step; zeros
        for idle slots), ``done (slots,)``, and per slot ``steps``, ``totals`` (the summed
        reward so far) and ``successes`` (0/1: ``info["success"]`` at the latest step).
        """
        rows = []
        for i, env in enumerate(self.envs):
            if self.done[i]:
                rows.append(None)
                continue
            obs = None
            for action in chunks[i]:  # (h, d): open-loop, as evaluate runs it
                obs, reward, terminated, truncated, info = env.step(action)
                self.steps[i] += 1
                self.totals[i] += float(reward)
                if terminated or truncated or (self.max_steps is not None and self.steps[i] >= self.max_steps):
                    self.done[i] = True
                    break
            self.successes[i] = int(bool(info.get("success", False)))
            rows.append(np.asarray(obs, np.float64))
        return {"obs": self._stack(rows), "done": self.done.copy(), "steps": list(self.steps),
                "totals": list(self.totals), "successes": list(self.successes)}

    def _stack(self, rows) -> np.ndarray:
        """Join the slots' observations; an idle slot gets zeros of its env's observation shape."""
        return np.stack([np.zeros(self.envs[i].observation_space.shape) if r is None else r
                         for i, r in enumerate(rows)]) if rows else np.zeros((0, 0))

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # closing is best effort: the process is about to end anyway
                pass
        self.envs = []


def serve(connection) -> None:
    """A worker's loop: answer ``(method, args)`` requests until ``("close",)`` or the parent goes.

    Answers ``("ok", value)`` or ``("error", text)``. The first request is
    ``("init", (tasks,))``; it builds the envs and answers ``EnvSlice.build``'s dict plus
    ``jax_imported`` (whether JAX was imported here, which it never should be).
    """
    # Ctrl-C reaches the whole process group; the parent handles it and closes its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_for_envs()
    envs = None
    try:
        while True:
            try:
                request = connection.recv()
            except (EOFError, OSError):  # the parent died or closed the pipe: nothing left to do
                return
            method, args = request[0], request[1] if len(request) > 1 else ()
            if method == "close":
                return
            try:
                if method == "init":
                    envs = EnvSlice(*args)
                    value = {**envs.build(), "jax_imported": "jax" in sys.modules, "pid": os.getpid()}
                elif method in ("reset", "step"):
                    value = getattr(envs, method)(*args)
                elif method == "cpu_seconds":
                    value = time.process_time()
                else:
                    raise ValueError(f"unknown request {method!r}")
                answer = ("ok", value)
            except Exception:
                answer = ("error", traceback.format_exc())
            try:
                connection.send(answer)
            except (EOFError, OSError):
                return
    finally:
        if envs is not None:
            envs.close()
        connection.close()


if __name__ == WORKER_RUN_NAME:  # run by EnvPool's worker processes through runpy.run_path
    serve(_CONNECTION)  # noqa: F821 (passed in as a global by runpy.run_path's init_globals)


# --------------------------------------------------------------------------- the pool (parent side)


@contextlib.contextmanager
def _main_module_hidden():
    """While starting workers, hide where this program's ``__main__`` came from.

    "spawn" normally makes each child run the parent's main script (or ``-m`` module) again,
    so that functions defined there can be unpickled. The workers' target is
    ``runpy.run_path`` of this file, which needs nothing from ``__main__``; running it again
    would import whatever the program imports (JAX, the training code), and an unguarded
    script would even start its work again in every worker.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__spec__", "__file__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class TaskError(ValueError):
    """An env could not be made for ``task``."""

    def __init__(self, task: str, message: str):
        super().__init__(f"could not make the env of task {task!r}: {message}")
        self.task, self.message = task, message


class WorkerError(RuntimeError):
    """A worker process failed (its traceback is in the message) or died."""


class EnvPool:
    """The envs of ``slot_tasks`` (one per slot), spread over ``workers`` processes.

    ``workers <= 1`` keeps them in this process. Otherwise each worker owns a contiguous,
    balanced block of slots; workers are started with the ``"spawn"`` method (a fresh
    interpreter: no copy of this process's JAX threads) and run ``serve`` from this file
    without importing the ``rql_lite`` package. Use it as a context manager: ``close``
    always runs, on errors and Ctrl-C too, and leaves no process behind.
    """

    def __init__(self, slot_tasks, workers: int):
        self.slot_tasks = [str(t) for t in slot_tasks]
        n = len(self.slot_tasks)
        self.num_workers = max(1, min(int(workers), n)) if n else 1
        edges = np.linspace(0, n, self.num_workers + 1).round().astype(int)
        self.bounds = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
        self.local = None
        self.processes, self.connections = [], []
        self.worker_info = []
        self.specs = None  # env_description of each slot, once started; None again once closed
        self.tasks, self.per_wave, self.startup_s = None, None, 0.0  # set by evaluate.eval_pool

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def _ask_all(self, method: str, args_per_worker) -> list:
        """Send one request to every worker first (so they work at once), then collect the answers."""
        for connection, args in zip(self.connections, args_per_worker):
            connection.send((method, args))
        answers = []
        for k, (connection, process) in enumerate(zip(self.connections, self.processes)):
            try:
                status, value = connection.recv()
            except (EOFError, OSError):
                process.join(timeout=1.0)
                raise WorkerError(f"env worker {k} (pid {process.pid}) ended unexpectedly (exit code "
                                  f"{process.exitcode}) during {method!r}; its error, if any, is printed above. "
                                  "Killed for memory? Each env holds its own MuJoCo model: pass a smaller max_envs. A "
                                  "script that starts workers needs the `if __name__ == \"__main__\":` guard "
                                  "(workers are spawned, and spawn runs the main script again)") from None
            if status != "ok":
                raise WorkerError(f"env worker {k} (pid {process.pid}) failed during {method!r}:\n{value}")
            answers.append(value)
        return answers

    def start(self) -> list[dict]:
        """Start the workers and make every env; return ``env_description`` of each slot.

        Raises ``TaskError`` for a task whose env cannot be made."""
        if self.num_workers <= 1:
            self.local = EnvSlice(self.slot_tasks)
            built = [self.local.build()]
        else:
            import multiprocessing
            import runpy

            context = multiprocessing.get_context("spawn")  # not "fork": this process runs JAX's threads
            for k, _ in enumerate(self.bounds):
                parent_end, child_end = context.Pipe()
                process = context.Process(
                    target=runpy.run_path, args=(os.path.abspath(__file__),),
                    kwargs={"init_globals": {"_CONNECTION": child_end}, "run_name": WORKER_RUN_NAME},
                    name=f"rql_lite-env-worker-{k}", daemon=True)  # daemon: ended if this process exits
                try:
                    with _main_module_hidden():
                        process.start()
                finally:
                    child_end.close()  # the worker's end lives in the worker; it sees EOF when we go
                self.processes.append(process)
                self.connections.append(parent_end)
            built = self._ask_all("init", [(self.slot_tasks[a:b],) for a, b in self.bounds])
            self.worker_info = [{"pid": b.get("pid"), "jax_imported": b.get("jax_imported")} for b in built]
        specs = []
        for answer in built:
            if "task_error" in answer:
                raise TaskError(*answer["task_error"])
            specs.extend(answer["specs"])
        return specs

    def reset(self, seeds, max_steps) -> np.ndarray:
        """``EnvSlice.reset`` over all slots: ``seeds`` (one per slot, ``None`` = idle) -> ``(slots, obs_dim)``."""
        if self.local is not None:
            return self.local.reset(seeds, max_steps)
        parts = self._ask_all("reset", [(list(seeds[a:b]), max_steps) for a, b in self.bounds])
        return np.concatenate(parts)

    def step(self, chunks: np.ndarray) -> dict:
        """``EnvSlice.step`` over all slots: ``chunks (slots, h, d)`` -> the joined dict."""
        if self.local is not None:
            return self.local.step(chunks)
        parts = self._ask_all("step", [(chunks[a:b],) for a, b in self.bounds])
        return {"obs": np.concatenate([p["obs"] for p in parts]), "done": np.concatenate([p["done"] for p in parts]),
                **{key: [v for p in parts for v in p[key]] for key in ("steps", "totals", "successes")}}

    def cpu_seconds(self) -> float | None:
        """The CPU time the workers have used so far, summed (``None`` when the envs live in this process)."""
        if self.local is not None or not self.processes:
            return None
        return float(sum(self._ask_all("cpu_seconds", [()] * len(self.processes))))

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Ask every worker to stop, wait a little, then terminate (and kill) any that did not."""
        self.specs = None
        try:
            if self.local is not None:
                self.local.close()
                self.local = None
            for connection in self.connections:
                try:
                    connection.send(("close",))
                except (OSError, ValueError):  # already gone or closed
                    pass
            for process in self.processes:
                process.join(timeout=5.0)
        finally:  # even if a second Ctrl-C arrives while waiting
            for process in self.processes:
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=2.0)
                if process.is_alive():
                    process.kill()
                    process.join()
            for connection in self.connections:
                connection.close()
            self.processes, self.connections = [], []
