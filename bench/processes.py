"""Subprocesses of a bench run: pinned to CPUs, awaited until they answer, measured, and always stopped.

Every child gets PR_SET_PDEATHSIG(SIGKILL), so even a bench killed with SIGKILL leaves
nothing behind; a normal end, Ctrl-C or SIGTERM stops them in order (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """A part of the bench did not start or misbehaved; the message says which and why."""


def _die_with_parent() -> None:
    """preexec_fn: the kernel kills the child when the bench process dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def raise_fd_limit() -> None:
    """1,000 streams through a proxy need over 2,000 descriptors in it; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPUs the proxy under test gets, and which the load generator and fake upstream share."""

    proxy_cpus: str | None
    load_cpus: str | None

    @staticmethod
    def for_machine(cpu_count: int | None = None) -> Pinning:
        count = cpu_count if cpu_count is not None else len(os.sched_getaffinity(0))
        if count < 2:
            return Pinning(None, None)  # nothing to separate; the table says so
        return Pinning("1", "0")

    def describe(self) -> str:
        if self.proxy_cpus is None:
            return "not pinned (fewer than 2 CPUs)"
        tool = "taskset" if shutil.which("taskset") else "sched_setaffinity"
        return f"proxy on CPU {self.proxy_cpus}; load generator and fake upstream on CPU {self.load_cpus} ({tool})"


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    if cpus is None:
        return list(argv)
    taskset = shutil.which("taskset")
    if taskset:
        return [taskset, "-c", cpus, *argv]
    return list(argv)  # Popen's preexec pins it instead


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """Owns every long-running child of the bench; `stop_all` is safe to call twice."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpus: str | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        cpu_set = {int(c) for c in cpus.split(",")} if cpus is not None else None

        def prepare() -> None:
            _die_with_parent()
            if cpu_set is not None and not shutil.which("taskset"):
                os.sched_setaffinity(0, cpu_set)

        popen = subprocess.Popen(
            pinned(argv, cpus),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=prepare,
            start_new_session=True,  # Ctrl-C reaches the bench only; it stops children in order
        )
        log.close()
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace_s: float = 10.0) -> None:
        if child.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(signal.SIGTERM)
            try:
                child.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.kill()
                child.popen.wait(timeout=5)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in list(reversed(self.children)):
            self.stop(child)


def run_pinned(
    argv: Sequence[str], cpus: str | None, timeout_s: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a short-lived child (a load generator) to completion, killed if it overstays."""
    cpu_set = {int(c) for c in cpus.split(",")} if cpus is not None else None

    def prepare() -> None:
        _die_with_parent()
        if cpu_set is not None and not shutil.which("taskset"):
            os.sched_setaffinity(0, cpu_set)

    with subprocess.Popen(
        pinned(argv, cpus),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        preexec_fn=prepare,
        start_new_session=True,
    ) as popen:
        try:
            out, err = popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.communicate()
            raise BenchError(f"{Path(argv[0]).name} did not finish within {timeout_s:.0f}s") from None
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        return subprocess.CompletedProcess(popen.args, popen.returncode, out, err)


def wait_until_answering(url: str, child: Child, timeout_s: float = 30.0) -> None:
    """Poll a GET url until it answers 2xx, failing early (with the child's log) if the child exits."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise BenchError(f"{child.name} exited with code {child.popen.returncode}:\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.05)
    raise BenchError(f"{child.name} did not answer {url} within {timeout_s:.0f}s ({last}):\n{child.log_tail()}")


# -- memory -------------------------------------------------------------------------------------


def _status_kb(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(field_name.encode() + b":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field_name}")


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024.0


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open (its connections, pooled or not, and its listeners)."""
    fd_dir = f"/proc/{pid}/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # closed meanwhile
            continue
    return count


class PeakRss:
    """Peak resident memory of a process over a block: the kernel's high-water mark, reset first.

    Where /proc/PID/clear_refs cannot be written, a 10 ms sampler stands in (it may miss a spike).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._use_hwm = False
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self._use_hwm = True
        except OSError:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, BenchError):
                self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            self._stop.wait(0.01)

    def __exit__(self, *exc: object) -> None:
        if self._use_hwm:
            with contextlib.suppress(OSError, BenchError):
                self.peak_mb = _status_kb(self.pid, "VmHWM") / 1024.0
        else:
            self._stop.set()
            if self._sampler is not None:
                self._sampler.join()


@contextlib.contextmanager
def stopping_on_signals(on_stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGHUP end the run like Ctrl-C does: through the `finally` that stops children."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        try:
            on_stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# -- other work on the machine ------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _busy_cpu_s(cpus: str | None = None) -> float:
    """CPU-seconds spent in user and kernel code (interrupts left out) since boot: all CPUs, or only `cpus`."""
    wanted = {f"cpu{c}".encode() for c in cpus.split(",")} if cpus is not None else {b"cpu"}
    total = 0
    with open("/proc/stat", "rb") as f:
        for line in f:
            if not line.startswith(b"cpu"):
                break
            fields = line.split()
            if fields[0] in wanted:
                total += int(fields[1]) + int(fields[2]) + int(fields[3])  # user, nice, system
    return total / _CLK_TCK


def process_cpu_s(pid: int) -> float:
    """CPU-seconds (user + system, all threads) a process has used; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return 0.0
    fields = text[text.rfind(b")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


class BackgroundCpu:
    """CPU that processes other than the bench's own used during a block, in cores (0.25 = a quarter).

    `cores`: on the proxy's CPU, where it competes with the proxy under test (the CPU's busy
    time minus the proxies' own); `machine_cores`: on every CPU, minus everything the bench
    runs. Other sessions' test runs on a shared machine show up here and make a repetition noisy.
    """

    def __init__(self, group: ProcessGroup, proxy_cpus: str | None = None, proxy_pids: Sequence[int] = ()) -> None:
        self.group = group
        self.proxy_cpus = proxy_cpus
        self.proxy_pids = tuple(proxy_pids)
        self.cores = 0.0
        self.machine_cores = 0.0
        self._start = (0.0, 0.0, 0.0, 0.0, 0.0)

    def _sample(self) -> tuple[float, float, float, float, float]:
        times = os.times()
        own = times.user + times.system + times.children_user + times.children_system
        own += sum(process_cpu_s(child.pid) for child in self.group.children)
        proxies = sum(process_cpu_s(pid) for pid in self.proxy_pids)
        on_proxy_cpu = _busy_cpu_s(self.proxy_cpus) if self.proxy_cpus is not None else 0.0
        return time.monotonic(), _busy_cpu_s(), own, on_proxy_cpu, proxies

    def __enter__(self) -> BackgroundCpu:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        wall, machine, own, on_proxy_cpu, proxies = self._sample()
        w0, m0, o0, c0, p0 = self._start
        elapsed = wall - w0
        if elapsed <= 0:
            return
        self.machine_cores = max(0.0, ((machine - m0) - (own - o0)) / elapsed)
        if self.proxy_cpus is None:
            self.cores = self.machine_cores
        else:
            self.cores = max(0.0, ((on_proxy_cpu - c0) - (proxies - p0)) / elapsed)
