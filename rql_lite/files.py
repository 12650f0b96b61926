"""Files: the one atomic writer, checksums, paths in records, and provenance (git commit, time).

Every file ``rql_lite`` writes (checkpoints, agent files, run.json, records, datasets, videos,
bench and fidelity JSON) goes through ``atomic_path``: it is written under a temporary name beside
its final path, flushed to disk, then renamed, so a reader never sees half a file and an
interruption leaves the previous file whole. The temporary name has one pattern,
``temporary_path`` (``NAME.tmp-PID.EXT``), which ``is_temporary`` and ``remove_stale_temporaries``
recognise; a run directory drops the temporaries of a killed process when it is next opened.

``exclusive_lock`` serialises processes that make the same file (several cluster jobs asking for
one dataset); ``sha256_cached`` hashes large files once, keeping the digest beside them.

Standard library only, and nothing of ``rql_lite``: processes without JAX (dataset workers,
scripts) use it too.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import subprocess
from typing import Iterator

TEMPORARY_MARK = ".tmp-"  # NAME.tmp-PID.EXT while a write is under way; never read
PREVIOUS_SUFFIX = ".prev"  # NAME.prev: the file a write with keep_previous replaced


def temporary_path(path: str, pid: int | None = None) -> str:
    """The name ``path`` is written under before it is renamed into place: ``path + ".tmp-PID"`` plus
    ``path``'s extension again, so that writers choosing the format by extension (ffmpeg, NumPy) keep
    it: ``run.json`` -> ``run.json.tmp-4242.json``."""
    return f"{path}{TEMPORARY_MARK}{os.getpid() if pid is None else pid}{os.path.splitext(path)[1]}"


def is_temporary(name: str) -> bool:
    """Whether a file name is an atomic write's temporary (``temporary_path``), finished or not."""
    return TEMPORARY_MARK in os.path.basename(name)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str, keep_previous: bool = False) -> Iterator[str]:
    """Yield the temporary path to write ``path``'s new contents to; when the block ends without an
    exception the file is flushed to disk and renamed to ``path`` (the rename too is flushed), so
    ``path`` is always either the old file or the new one, whole. On an exception (Ctrl-C included)
    the temporary file is removed and ``path`` is unchanged. Parent folders are created.

    ``keep_previous``: the file being replaced is kept as ``path + ".prev"``. A kill between the two
    renames leaves only the ``.prev`` file, the last good one.

    Example: ``with atomic_path("a.npz") as tmp: np.savez(tmp, x=x)``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if keep_previous and os.path.exists(path):
            os.replace(path, path + PREVIOUS_SUFFIX)
        os.replace(tmp, path)
        _fsync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_bytes_atomic(path: str, data: bytes, keep_previous: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path, keep_previous) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json_atomic(path: str, payload) -> None:
    """Write ``payload`` as indented JSON with sorted keys (and a final newline) atomically."""
    write_bytes_atomic(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json_file(path: str, missing: str, fix: str):
    """The JSON in ``path``. A ``ValueError`` says ``missing`` when there is no file, and names the file,
    what is wrong with it and ``fix`` when it is not valid JSON or not text."""
    if not os.path.isfile(path):
        raise ValueError(missing)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is damaged (not valid JSON: {err.msg} at line {err.lineno}); {fix}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is damaged (not text); {fix}") from None


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the temporaries a killed write left anywhere under ``folder``; return their paths.

    Call it only where no other process is writing (a run directory while holding its lock): a
    temporary is never read, a write being complete only once it is renamed."""
    removed = []
    for current, _, names in os.walk(folder):
        for name in sorted(names):
            if is_temporary(name):
                path = os.path.join(current, name)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed.append(path)
    return sorted(removed)


def sha256_of(paths) -> str:
    """One sha256 over the bytes of ``paths`` in order (e.g. a dataset's train file, then its val file)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_cached(paths, cache_path: str) -> str:
    """``sha256_of(paths)``, read from ``cache_path`` when none of ``paths`` changed since it was written.

    The cache (JSON) holds the digest with each file's name, size and modification time (ns); any
    difference, or a missing or unreadable cache, means hashing again and rewriting the cache
    atomically. A cache that cannot be written (read-only storage) is skipped silently: it only
    saves time. Hashing a 1M-transition dataset takes seconds, which every training segment would
    otherwise spend again.
    """
    def stamp(path):
        st = os.stat(path)
        return {"name": os.path.basename(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    stamps = [stamp(p) for p in paths]
    try:
        with open(cache_path, encoding="utf-8") as f:
            cached = json.load(f)
        if cached["files"] == stamps and isinstance(cached["sha256"], str) and len(cached["sha256"]) == 64:
            return cached["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_of(paths)
    # Stamped before hashing: a file rewritten while it was hashed gets a stamp that no longer matches.
    with contextlib.suppress(OSError):
        write_json_atomic(cache_path, {"files": stamps, "sha256": digest})
    return digest


@contextlib.contextmanager
def exclusive_lock(path: str, on_wait=None) -> Iterator[None]:
    """Hold an exclusive OS lock (``flock``) on ``path`` (created if missing) for the block; wait for it.

    ``on_wait()`` is called once if another process holds it (say what is being waited for). The OS
    drops the lock when its holder ends, however it ends, so a killed holder never blocks the
    others. The file is left in place: removing it would let a waiter and a newcomer lock two
    different files. (Across machines this needs a file system with working locks, as NFS v4 and
    Lustre have.)
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def portable_path(path: str) -> str:
    """``path`` as it can be written into a shared record: under the home directory it starts
    with ``~``, under the working directory it is relative; otherwise absolute."""
    path = os.path.abspath(os.path.expanduser(path))
    cwd, home = os.getcwd(), os.path.expanduser("~")
    if path.startswith(cwd + os.sep):
        return os.path.relpath(path, cwd)
    if path.startswith(home + os.sep):
        return os.path.join("~", os.path.relpath(path, home))
    return path


def check_writable_directory(path: str, what: str) -> None:
    """``ValueError`` unless ``path`` is a directory this process can write in, or can be created.

    ``what`` names the argument in the message, e.g. ``"--out"``. Creates nothing.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path} is a file, not a directory; choose a directory (new or empty)")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path} cannot be created: {existing} is a file; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == path else f"its parent {existing}"
        raise ValueError(f"{what} {path} is not writable ({where} is read-only for this user); choose a writable "
                         f"directory or change its permissions")


def git_commit(where: str | None = None) -> str | None:
    """The commit of the checkout ``rql_lite`` runs from (or ``where``), with ``+dirty`` for uncommitted
    changes to tracked files outside ``results/``: a run writing its own committed records there does
    not make the code it runs dirty.

    ``RQL_GIT_COMMIT``, when set, wins: a copy of a checkout sent to another machine (a GPU node's)
    may carry a stale ``.git`` or none, while whoever sent it knows the commit it was copied at.
    """
    if os.environ.get("RQL_GIT_COMMIT"):
        return os.environ["RQL_GIT_COMMIT"]
    here = where or os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=here)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], capture_output=True, text=True, check=True, cwd=here)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def utc_now() -> str:
    """The time now, UTC, to the second, in ISO 8601 (``2026-01-31T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
