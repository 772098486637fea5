"""Where the gateway spends its CPU per request: py-spy samples it under load, folded into top-N lists.

    .venv/bin/pip install py-spy          # not a project dependency; a sampling profiler
    .venv/bin/python -m bench.profile     # non-stream c=64 and stream c=64, 8 s each

Prints, for each workload: CPU-seconds per request, the functions with the most samples
on top of the stack (self), the most samples anywhere in the stack (inclusive, counted once
per stack), and the split by package. `--out DIR` keeps the collapsed stacks for a flame graph.
Only the gateway is profiled; the fake upstream and the load generator run as in `make bench`.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.harness import FLOOR, GATEWAY, PROXIES, WORKLOADS, body_file, start_floor, start_gateway, start_upstream
from bench.loadgen import Load, run_driver, run_wrk, wrk_path
from bench.processes import BenchError, Pinning, ProcessGroup, raise_fd_limit, stopping_on_signals

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*):(?P<line>\d+)\)$")


@dataclass(frozen=True, slots=True)
class Folded:
    """Collapsed stacks: one stack (outermost first) per line, with its sample count."""

    stacks: list[tuple[tuple[str, ...], int]]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.stacks)

    @staticmethod
    def parse(lines: Iterable[str]) -> Folded:
        stacks = []
        for line in lines:
            line = line.rstrip("\n")
            if not line:
                continue
            frames, _, count = line.rpartition(" ")
            stacks.append((tuple(frames.split(";")), int(count)))
        return Folded(stacks)


def short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/gateway/" in path:
        return "gateway/" + path.rsplit("/gateway/", 1)[1]
    stdlib = re.search(r"/python3\.\d+/(.*)$", path)
    return stdlib.group(1) if stdlib else path


def short_frame(frame: str) -> str:
    """`func (/abs/site-packages/pkg/mod.py:12)` -> `pkg/mod.py:func`; line numbers dropped."""
    found = _FRAME.match(frame)
    if not found:
        return frame
    return f"{short_path(found['file'])}:{found['func']}"


def package_of(frame: str) -> str:
    """`aiohttp`, `asyncio`, `starlette`...; the gateway's own code by module (`gateway/proxy.py`)."""
    path = short_frame(frame).split(":", 1)[0]
    if path.startswith("gateway/"):
        return path
    return path.split("/", 1)[0]


def top_self(folded: Folded, n: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for frames, count in folded.stacks:
        counts[short_frame(frames[-1])] += count
    return counts.most_common(n)


def top_inclusive(folded: Folded, n: int, only_gateway: bool = False) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for frames, count in folded.stacks:
        for name in {short_frame(f) for f in frames}:
            if not only_gateway or name.startswith("gateway/"):
                counts[name] += count
    return counts.most_common(n)


def by_package(folded: Folded) -> list[tuple[str, int]]:
    """Self samples by package of the innermost frame; the gateway's own modules are listed one by one."""
    counts: Counter[str] = Counter()
    for frames, count in folded.stacks:
        counts[package_of(frames[-1])] += count
    return counts.most_common()


def render(title: str, folded: Folded, requests: float, cpu_s: float, n: int) -> str:
    total = folded.total or 1
    out = [
        f"== {title}: {folded.total} samples; {requests:,.0f} requests; "
        f"{cpu_s * 1e6 / max(requests, 1):,.0f} us of CPU per request =="
    ]
    sections = (
        ("self (innermost frame)", top_self(folded, n)),
        ("inclusive, gateway code", top_inclusive(folded, n, only_gateway=True)),
        ("inclusive, everything", top_inclusive(folded, n)),
        ("self by package", by_package(folded)[:n]),
    )
    for heading, rows in sections:
        out.append(f"-- {heading}")
        out += [f"  {100.0 * count / total:5.1f}%  {name}" for name, count in rows]
    return "\n".join(out)


def _cpu_s(pid: int) -> float:
    import os

    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    fields = text[text.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds of load (and sampling) per workload")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, help="keep the collapsed stacks (flamegraph.pl / speedscope input) here")
    parser.add_argument("--gateway-src", type=Path, help="profile the gateway from this source tree")
    parser.add_argument(
        "--workloads",
        default="ns64,st64",
        help=f"comma-separated subset of {','.join(w.id for w in WORKLOADS)} (default ns64,st64)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="profile the Starlette + aiohttp floor instead, to compare"
    )
    parser.add_argument(
        "--gil", action="store_true", help="only samples holding the GIL (leaves out waiting for the writer thread)"
    )
    args = parser.parse_args()
    by_id = {w.id: w for w in WORKLOADS}
    unknown = [w for w in args.workloads.split(",") if w not in by_id]
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(by_id)}")
    workloads = [by_id[w] for w in args.workloads.split(",")]
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("bench.profile: py-spy is not installed; `.venv/bin/pip install py-spy`", file=sys.stderr)
        return 1
    raise_fd_limit()
    pinning = Pinning.for_machine()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    group = ProcessGroup(workdir)
    spec = next(p for p in PROXIES if p.name == (FLOOR if args.floor else GATEWAY))
    try:
        with stopping_on_signals(group.stop_all):
            upstream = start_upstream(group, pinning)
            source = args.gateway_src.resolve() if args.gateway_src else None
            if args.floor:
                target = start_floor(group, spec, "starlette", upstream, pinning)
            else:
                target = start_gateway(group, spec, workdir, upstream, pinning, source)
            for workload in workloads:
                label, stream = workload.label, workload.stream
                load = Load(
                    url=target.base_url + "/v1/chat/completions",
                    body_file=body_file(workdir, workload.model, stream),
                    key=target.key,
                    concurrency=workload.concurrency,
                    duration_s=float(args.duration),
                    stream=stream,
                )
                runner = run_wrk if wrk_path() else run_driver
                runner(dataclasses.replace(load, duration_s=1.0), pinning.load_cpus)  # warm-up
                raw = workdir / f"{workload.id}.txt"
                spy = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(target.child.pid),
                        "--rate",
                        str(args.rate),
                        "--format",
                        "raw",
                        "--duration",
                        str(args.duration + 2),
                        "--nonblocking",
                        *(["--gil"] if args.gil else []),
                        "-o",
                        str(raw),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(1.0)  # py-spy attached before the load starts
                cpu_before = _cpu_s(target.child.pid)
                figures = runner(load, pinning.load_cpus)
                cpu_s = _cpu_s(target.child.pid) - cpu_before
                spy.wait(timeout=args.duration + 30)
                if not raw.exists():
                    raise BenchError(f"py-spy wrote nothing: {spy.stderr.read().decode() if spy.stderr else ''}")
                requests = figures.get("requests", figures["rps"] * args.duration)
                with raw.open() as f:
                    print(render(label, Folded.parse(f), requests, cpu_s, args.top), flush=True)
                print(f"   ({figures['rps']:,.0f} req/s under py-spy --nonblocking at {args.rate} Hz)\n", flush=True)
                if args.out is not None:
                    args.out.mkdir(parents=True, exist_ok=True)
                    shutil.copy(raw, args.out / raw.name)
    except BenchError as e:
        print(f"bench.profile: {e}", file=sys.stderr)
        return 1
    finally:
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
