"""The environment side of evaluation: slices of envs stepped through action chunks, in worker processes.

JAX-free on purpose. A worker process does not import the ``rql_lite`` package (its
``__init__`` imports JAX): ``EnvPool`` starts each worker with ``runpy.run_path`` on this
file, so the worker imports numpy, gymnasium and OGBench (MuJoCo) only. In this process
the same ``EnvSlice`` class serves ``workers <= 1``.

An episode *slot* is one env. ``EnvSlice`` holds a contiguous block of slots and steps
each live one through its action chunk open-loop, as the authors' release does:
``env.step`` per action, the reward summed as a Python float, the episode ending at
``terminated or truncated`` or at ``max_steps``; success is ``info["success"]`` at the
episode's last step. A slot may record its episode's frames (``env.render()`` after the reset
and after every ``video_every``-th step).

Everything that makes an env here (and in the dataset generator) first calls
``prepare_for_envs``: EGL rather than GLFW on a headless machine, and no float32-cast warning
at every reset.
"""
from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import runpy
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

    - On Linux, MuJoCo's GL backend is chosen once (``choose_gl``): ``MUJOCO_GL`` if it is set and
      works, else EGL, else OSMesa, else none (``MUJOCO_GL=disable``: envs work, rendering says why it
      cannot). MuJoCo reads the variable once, when it is first imported, and a backend that cannot
      load makes that import fail, which would take data and evaluation down with the video; unset,
      it initialises GLFW, which needs a display. EGL needs no display (Mesa's software rasteriser on
      a CPU machine, the driver's EGL on an NVIDIA one). MuJoCo's choice is kept if it was imported
      already (``ensure_headless_gl`` deals with that).
    - gymnasium's "precision lowered by casting to float32" warning is hidden, and only that one:
      OGBench's manipulation envs declare their bounds in float64 and build a new action space on
      every access (each reset calls it), so it would repeat all through a rollout. The cast is
      harmless here (observations and actions are float32 anyway). Every other warning still shows.
    """
    if sys.platform.startswith("linux") and "mujoco" not in sys.modules:
        choose_gl()
    warnings.filterwarnings("ignore", message=FLOAT32_BOUNDS_WARNING, category=UserWarning)


# --------------------------------------------------------------------------- rendering

GL_CHOICE = "RQL_LITE_GL"  # choose_gl's answer, "backend|why", inherited by the processes this one starts
GL_OFF = ("disable", "disabled", "off", "false", "0")
GL_FALLBACKS = ("egl", "osmesa")
# Run with MUJOCO_GL set: import MuJoCo, render one frame, print the GL renderer's name.
GL_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
renderer = mujoco.Renderer(model, 8, 8)
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer.update_scene(data)
renderer.render()
from OpenGL import GL
print("GL renderer:", GL.glGetString(GL.GL_RENDERER).decode(errors="replace"))
"""


class RenderingUnavailable(RuntimeError):
    """No GL backend MuJoCo can render with works in this process (``gl_status`` says why)."""


def _probe_gl(backend: str) -> tuple[bool, str]:
    """Whether MuJoCo imports and renders with ``MUJOCO_GL=backend``, tried in a child process (a
    backend that fails to load breaks ``import mujoco`` for good in the process that tries it); with
    the GL renderer's name, or the last line of the error."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != GL_CHOICE}
    env["MUJOCO_GL"] = backend
    if backend in GL_FALLBACKS:
        env["PYOPENGL_PLATFORM"] = backend
    try:
        done = subprocess.run([sys.executable, "-c", GL_PROBE], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{type(err).__name__}: {err}"
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode == 0 and lines and lines[-1].startswith("GL renderer:"):
        return True, lines[-1][len("GL renderer:"):].strip()
    return False, (lines[-1] if lines else f"exit status {done.returncode}")[:200]


def choose_gl() -> str:
    """Choose MuJoCo's GL backend for this process and the processes it starts; return it.

    Tried in order, each in a child process (``_probe_gl``): ``MUJOCO_GL`` when set, then EGL, then
    OSMesa. The first that imports MuJoCo and renders a frame is set as ``MUJOCO_GL`` (and
    ``PYOPENGL_PLATFORM`` for EGL and OSMesa); if none does, ``MUJOCO_GL=disable``, so MuJoCo still
    imports and everything but rendering works. The answer goes into ``RQL_LITE_GL``, which child
    processes (env workers, commands) inherit instead of probing again. ``MUJOCO_GL=disable`` (or off)
    set by the user is kept without probing. Call it before MuJoCo is imported.
    """
    known = os.environ.get(GL_CHOICE)
    if known:
        backend = known.split("|", 1)[0]
    else:
        requested = os.environ.get("MUJOCO_GL", "").strip().lower()
        if requested in GL_OFF:
            backend, why = requested, "MUJOCO_GL turns rendering off"
        else:
            tried = []
            backend = "disable"
            for candidate in dict.fromkeys([c for c in (requested, *GL_FALLBACKS) if c]):
                ok, detail = _probe_gl(candidate)
                if ok:
                    backend, why = candidate, f"MuJoCo renders with {candidate} ({detail})"
                    break
                if "'NoneType' object has no attribute" in detail:  # PyOpenGL found no library to load
                    detail = f"its library could not be loaded ({detail})"
                tried.append(f"{candidate}: {detail}")
            else:
                why = "no GL backend MuJoCo can render with works here (" + "; ".join(tried) + ")"
        os.environ[GL_CHOICE] = f"{backend}|{why}"
    os.environ["MUJOCO_GL"] = backend
    if backend in GL_FALLBACKS:
        os.environ["PYOPENGL_PLATFORM"] = backend
    return backend


def gl_status() -> tuple[bool, str]:
    """``(can_render, one sentence)``: whether envs here can render, and with what or why not."""
    if sys.platform.startswith("linux") and "mujoco" not in sys.modules:
        choose_gl()
    backend, _, why = os.environ.get(GL_CHOICE, "|").partition("|")
    if not sys.platform.startswith("linux") or not backend:
        return True, f"MuJoCo renders with its default backend (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')})"
    return backend not in GL_OFF, why



def ensure_headless_gl() -> str:
    """Make MuJoCo's offscreen renderer usable on a headless Linux machine; return the backend.

    ``MUJOCO_GL`` is read when ``mujoco`` is first imported. If that happened with it unset
    (e.g. a notebook imported ``ogbench`` before anything of ``rql_lite`` made an env) on Linux
    without a display, MuJoCo would try GLFW and fail; in that case its context class is switched
    to EGL. An explicit ``MUJOCO_GL`` choice is always respected.
    """
    if not sys.platform.startswith("linux"):
        return "default"
    prepare_for_envs()
    if os.environ.get("MUJOCO_GL", "").lower() in GL_OFF:
        raise RenderingUnavailable(f"cannot render: {gl_status()[1]}")
    import mujoco  # noqa: F401

    module = sys.modules.get("mujoco.rendering.classic.gl_context") or sys.modules.get("mujoco.gl_context")
    if module is None:
        return os.environ.get("MUJOCO_GL", "")
    chosen = getattr(module, "_MUJOCO_GL", os.environ.get("MUJOCO_GL", ""))
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if chosen in ("", "enable", "enabled", "on", "true", "1") and not has_display:
        if os.environ.get("PYOPENGL_PLATFORM", "egl").lower() != "egl":
            raise RuntimeError(
                "rendering needs MUJOCO_GL=egl on a headless machine, but PYOPENGL_PLATFORM="
                f"{os.environ['PYOPENGL_PLATFORM']!r} was set; unset it or set both before starting Python")
        from mujoco.egl import GLContext

        module.GLContext = GLContext
        return "egl"
    return chosen or "glfw"


def _render_help(err: BaseException) -> str:
    return (
        f"could not render with MuJoCo (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}): "
        f"{err.__class__.__name__}: {err}. On headless Linux run with MUJOCO_GL=egl (set before mujoco "
        "is imported) and install the EGL/Mesa libraries: apt-get install -y libegl1 libegl-mesa0 "
        "libgl1-mesa-dri libopengl0 (on NVIDIA machines the driver provides EGL)."
    )


def render_frame(env) -> np.ndarray:
    """``env.render()`` as an ``(H, W, 3)`` uint8 frame, or a ``RuntimeError`` that says how to fix it."""
    try:
        frame = env.render()
    except Exception as err:  # GL errors come as many types (FatalError, AttributeError, ...)
        raise RuntimeError(_render_help(err)) from err
    if frame is None:
        raise RuntimeError("env.render() returned None; make the env with make_eval_env(task, render=True)")
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise RuntimeError(f"env.render() returned shape {frame.shape}; expected an RGB image (H, W, 3)")
    return frame.astype(np.uint8, copy=False)


# --------------------------------------------------------------------------- envs


def make_env(task: str, render_size: tuple[int, int] | None = None, **env_kwargs):
    """The env of ``task``: an OGBench task name (``ogbench.make_env_and_datasets(task,
    env_only=True)``, gymnasium's time limit included), or gymnasium's ``"module:EnvId-v0"`` form
    (gymnasium imports ``module``, which registers ``EnvId-v0``).

    ``render_size``: ``(width, height)`` of the frames ``env.render()`` returns (OGBench's envs
    create their renderer at the first ``render``; their manipulation envs accept ``render_mode``
    but ignore it, and passing ``render_mode='rgb_array'`` only makes gymnasium warn, so none is
    passed). ``env_kwargs`` go to the env's constructor.
    """
    prepare_for_envs()
    if ":" in task:
        import gymnasium

        return gymnasium.make(task, **env_kwargs)
    import ogbench

    if render_size is not None:
        ensure_headless_gl()
        env_kwargs = {"width": int(render_size[0]), "height": int(render_size[1]), **env_kwargs}
    return ogbench.make_env_and_datasets(task, env_only=True, **env_kwargs)


def env_description(env) -> dict:
    """What an agent is checked against before it acts in an env: space shapes and the env's name."""
    obs_shape = getattr(env.observation_space, "shape", None)
    act_shape = getattr(env.action_space, "shape", None)
    return {"obs_shape": None if obs_shape is None else tuple(obs_shape),
            "action_shape": None if act_shape is None else tuple(act_shape),
            "name": getattr(getattr(env, "spec", None), "id", type(env).__name__)}


class EnvSlice:
    """The envs of slots ``0..len(tasks)-1`` of one worker (``tasks[i]``: slot i's task).

    ``envs``: ready-made envs to step instead (one per task; the caller keeps and closes them).
    ``render_size``: ``(width, height)`` of recorded frames (``make_env``).
    """

    def __init__(self, tasks, envs=None, render_size=None):
        self.tasks = [str(t) for t in tasks]
        self.given = list(envs) if envs is not None else None
        self.render_size = render_size
        self.envs = []
        self.max_steps, self.video_every = None, 1
        n = len(self.tasks)
        self.done = np.ones(n, bool)
        self.steps = [0] * n
        self.totals = [0.0] * n
        self.successes = [0] * n
        self.frames = [None] * n  # a list of frames for each recording slot

    def build(self) -> dict:
        """Make every slot's env. Returns ``{"specs": [env_description per slot]}``, or
        ``{"task_error": (task, message)}`` for the first task that could not be made."""
        if self.given is not None:
            self.envs = list(self.given)
        for task in self.tasks[len(self.envs):]:
            try:
                self.envs.append(make_env(task, self.render_size))
            except Exception as err:  # gymnasium raises several types for unknown names
                return {"task_error": (task, f"{type(err).__name__}: {err}")}
        return {"specs": [env_description(env) for env in self.envs]}

    def reset(self, seeds, max_steps, record=None, video_every: int = 1) -> np.ndarray:
        """Start an episode in each slot whose seed is not ``None`` (the others stay idle).

        ``seeds``: one ``env.reset`` seed or ``None`` per slot. ``record``: per slot, whether to
        record this episode's frames (default none). Returns the observations,
        ``(slots, obs_dim)`` float64 (an idle slot's row is zeros).
        """
        self.max_steps, self.video_every = max_steps, int(video_every)
        record = [False] * len(self.envs) if record is None else list(record)
        rows = []
        for i, (env, seed) in enumerate(zip(self.envs, seeds)):
            self.steps[i], self.totals[i], self.successes[i] = 0, 0.0, 0
            self.done[i] = seed is None
            rows.append(None if seed is None else np.asarray(env.reset(seed=int(seed))[0], np.float64))
            self.frames[i] = [render_frame(env)] if seed is not None and record[i] else None
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
            for action in chunks[i]:  # (h, d): open-loop execution of the chunk
                obs, reward, terminated, truncated, info = env.step(action)
                self.steps[i] += 1
                self.totals[i] += float(reward)
                if self.frames[i] is not None and self.steps[i] % self.video_every == 0:
                    self.frames[i].append(render_frame(env))
                if terminated or truncated or (self.max_steps is not None and self.steps[i] >= self.max_steps):
                    self.done[i] = True
                    break
            self.successes[i] = int(bool(info.get("success", False)))
            rows.append(np.asarray(obs, np.float64))
        return {"obs": self._stack(rows), "done": self.done.copy(), "steps": list(self.steps),
                "totals": list(self.totals), "successes": list(self.successes)}

    def take_frames(self) -> list:
        """Each slot's recorded frames as one ``(T, H, W, 3)`` uint8 array (``None`` for a slot that did
        not record), and forget them."""
        out = [None if f is None else np.stack(f) for f in self.frames]
        self.frames = [None] * len(self.frames)
        return out

    def _stack(self, rows) -> np.ndarray:
        """Join the slots' observations; an idle slot gets zeros of its env's observation shape."""
        return np.stack([np.zeros(self.envs[i].observation_space.shape) if r is None else r
                         for i, r in enumerate(rows)]) if rows else np.zeros((0, 0))

    def close(self) -> None:
        """Close the envs this slice made (not those it was given)."""
        for env in self.envs[len(self.given or []):]:
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
                elif method in ("reset", "step", "take_frames"):
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

    ``render_size``: ``(width, height)`` of the frames of recording slots (``make_env``);
    ``envs``: ready-made envs, one per slot, stepped in this process (the caller closes them).
    """

    def __init__(self, slot_tasks, workers: int, render_size=None, envs=None):
        self.slot_tasks = [str(t) for t in slot_tasks]
        self.render_size, self.given_envs = render_size, envs
        n = len(self.slot_tasks)
        self.num_workers = max(1, min(int(workers), n)) if n and envs is None else 1
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
            self.local = EnvSlice(self.slot_tasks, self.given_envs, self.render_size)
            built = [self.local.build()]
        else:
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
            built = self._ask_all("init", [(self.slot_tasks[a:b], None, self.render_size) for a, b in self.bounds])
            self.worker_info = [{"pid": b.get("pid"), "jax_imported": b.get("jax_imported")} for b in built]
        specs = []
        for answer in built:
            if "task_error" in answer:
                raise TaskError(*answer["task_error"])
            specs.extend(answer["specs"])
        return specs

    def reset(self, seeds, max_steps, record=None, video_every: int = 1) -> np.ndarray:
        """``EnvSlice.reset`` over all slots: ``seeds`` (one per slot, ``None`` = idle) -> ``(slots, obs_dim)``;
        ``record``: per slot, whether to record the episode's frames."""
        record = [False] * len(self.slot_tasks) if record is None else list(record)
        if self.local is not None:
            return self.local.reset(seeds, max_steps, record, video_every)
        parts = self._ask_all("reset", [(list(seeds[a:b]), max_steps, record[a:b], video_every)
                                        for a, b in self.bounds])
        return np.concatenate(parts)

    def step(self, chunks: np.ndarray) -> dict:
        """``EnvSlice.step`` over all slots: ``chunks (slots, h, d)`` -> the joined dict."""
        if self.local is not None:
            return self.local.step(chunks)
        parts = self._ask_all("step", [(chunks[a:b],) for a, b in self.bounds])
        return {"obs": np.concatenate([p["obs"] for p in parts]), "done": np.concatenate([p["done"] for p in parts]),
                **{key: [v for p in parts for v in p[key]] for key in ("steps", "totals", "successes")}}

    def take_frames(self) -> list:
        """``EnvSlice.take_frames`` over all slots: per slot ``(T, H, W, 3)`` frames or ``None``."""
        if self.local is not None:
            return self.local.take_frames()
        return [f for part in self._ask_all("take_frames", [()] * len(self.processes)) for f in part]

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
