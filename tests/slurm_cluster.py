"""A real one-node SLURM for the tests: Debian's slurm-wlm and munge, started as daemons in a temp dir.

``LocalSlurm.start()`` writes a ``slurm.conf`` (this host, its CPUs, one partition, no accounting, no
cgroups: ``proctrack/linuxproc``, ``task/none``), starts ``munged`` on its own socket with a key of
its own, then ``slurmctld`` and ``slurmd`` (they daemonize), and waits until ``sinfo`` shows the node
idle. Every daemon runs as the user running the tests (``SlurmUser`` and ``SlurmdUser``): root is not
needed, since that user's jobs are the only ones. ``env`` is what a client (``sbatch``, ``squeue``)
needs: ``SLURM_CONF``. ``stop()`` cancels every job, shuts the daemons down and ends ``munged``,
each by the PID it wrote, and returns the names of any still alive. ``Unavailable`` says why SLURM
cannot start here (binaries missing, a daemon that does not come up), with the daemons' logs.
"""
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")


class Unavailable(RuntimeError):
    """SLURM cannot start on this machine; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)),
                                      None)


class LocalSlurm:
    def __init__(self):
        self.dir = None
        self.env = None
        self.host = socket.gethostname()

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def start(self) -> "LocalSlurm":
        missing = [name for name in DAEMONS + CLIENTS if _which(name) is None]
        if missing:
            raise Unavailable(f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)")
        user = getpass.getuser()
        # A short path: munge's socket name must fit in a sockaddr_un (108 bytes).
        self.dir = tempfile.mkdtemp(prefix="rql-slurm-", dir="/tmp")
        for sub in ("state", "spool"):
            os.makedirs(self.path(sub))
        fd = os.open(self.path("munge.key"), os.O_WRONLY | os.O_CREAT, 0o600)  # munged refuses a readable key
        os.write(fd, os.urandom(128))
        os.close(fd)
        conf = f"""\
ClusterName=rqltest
SlurmctldHost={self.host}
AuthType=auth/munge
AuthInfo=socket={self.path('munge.socket')}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={self.path('state')}
SlurmdSpoolDir={self.path('spool')}
SlurmctldPidFile={self.path('slurmctld.pid')}
SlurmdPidFile={self.path('slurmd.pid')}
SlurmctldLogFile={self.path('slurmctld.log')}
SlurmdLogFile={self.path('slurmd.log')}
SlurmUser={user}
SlurmdUser={user}
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=10
SchedulerParameters=sched_interval=1
NodeName={self.host} CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=test Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.path("slurm.conf"), "w") as f:
            f.write(conf)
        self.env = {**os.environ, "SLURM_CONF": self.path("slurm.conf")}
        try:
            self._daemon([_which("munged"), "--force", f"--socket={self.path('munge.socket')}",
                          f"--pid-file={self.path('munged.pid')}", f"--log-file={self.path('munged.log')}",
                          f"--seed-file={self.path('munge.seed')}", f"--key-file={self.path('munge.key')}"])
            self._daemon([_which("slurmctld")])
            self._daemon([_which("slurmd")])
            self._wait_idle(timeout=30)
        except Unavailable:
            self.stop()
            raise
        return self

    def _daemon(self, argv) -> None:
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise Unavailable(f"{os.path.basename(argv[0])} did not start: {result.stderr.strip()[-500:]}"
                              f"{self.logs()}")

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            result = self.run("sinfo", "--noheader", "--format=%t", check=False)
            if result.returncode == 0 and result.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise Unavailable(f"the node did not become idle in {timeout:.0f} s{self.logs()}")

    def run(self, *argv, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        result = subprocess.run([_which(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                                timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result

    def queue(self) -> list[str]:
        """``JOBID|STATE|REASON`` of every job (array elements one by one) pending or running."""
        result = self.run("squeue", "--noheader", "--array", "--format=%i|%T|%r", check=False)
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

    def logs(self) -> str:
        out = ""
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            if self.dir and os.path.exists(self.path(name)):
                with open(self.path(name), errors="replace") as f:
                    out += f"\n--- {name} (end)\n" + "".join(f.readlines()[-15:])
        return out

    def _pid(self, name: str) -> int | None:
        try:
            with open(self.path(f"{name}.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> list[str]:
        """Cancel every job, stop the daemons (by the PIDs they wrote); return the names of any still alive."""
        if self.dir is None:
            return []
        if self._pid("slurmctld"):
            self.run("scancel", f"--user={getpass.getuser()}", check=False)
            self.run("scontrol", "shutdown", check=False)  # slurmctld and every slurmd
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(self._pid(n)) for n in ("slurmctld", "slurmd")):
            time.sleep(0.5)
        for name in ("slurmctld", "slurmd", "munged"):
            pid = self._pid(name)
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(self._pid(n)) for n in DAEMONS):
            time.sleep(0.2)
        left = [n for n in DAEMONS if _alive(self._pid(n))]
        if os.environ.get("RQL_KEEP_SLURM_DIR"):  # to read slurmctld.log and slurmd.log after a failure
            print(f"SLURM's folder kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        return left


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped by whoever adopted it) counts as stopped
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
