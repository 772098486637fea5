"""`python -m bench`: start the fake upstream, the floors and the gateway; run the workloads; print one table.

Method: every proxy runs at once (idle when not under test), pinned to its own CPU; the
load generator and the fake upstream share the other. Each workload is repeated (default
3 times) with the proxies' order rotated, and each figure is the median of its repetitions
(peak RSS: the largest). Then, proxy by proxy, rounds of 1,000 concurrent slow streams
measure memory. Everything is stopped at the end, on Ctrl-C, SIGTERM or a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import report
from bench.loadgen import Load, run_driver, run_wrk, wrk_path
from bench.processes import (
    BackgroundCpu,
    BenchError,
    Child,
    PeakRss,
    Pinning,
    ProcessGroup,
    free_port,
    open_sockets,
    process_cpu_s,
    raise_fd_limit,
    rss_mb,
    stopping_on_signals,
    wait_until_answering,
)
from bench.stats import median, median_figures

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
FLOOR = "floor"
GATEWAY = "gateway"
MEMORY_MODEL = "bench-g100"  # 20 chunks 100 ms apart: a stream lasts about two seconds, so all overlap
PRICE = {"input_per_mtok": 0.15, "output_per_mtok": 0.6, "cached_input_per_mtok": 0.075}


@dataclass(frozen=True, slots=True)
class Workload:
    id: str
    label: str
    model: str
    stream: bool
    concurrency: int


WORKLOADS = (
    Workload("ns1", "non-stream c=1", "bench", False, 1),
    Workload("ns64", "non-stream c=64", "bench", False, 64),
    Workload("st1", "stream c=1 (20 chunks)", "bench", True, 1),
    Workload("st64", "stream c=64 (20 chunks)", "bench", True, 64),
    Workload("slow256", "256 in flight, 200 ms upstream", "bench-d200", False, 256),
    # The same with the upstream's delay spread over 150-250 ms, as a real model's is: with exactly 200 ms the
    # 256 requests move through a CPU-bound proxy in waves, which is what sets the p99 of the row above.
    Workload("slow256j", "256 in flight, 200 +/- 50 ms upstream", "bench-d200-j50", False, 256),
)
ALL_WORKLOAD_IDS = (*(w.id for w in WORKLOADS), "mem")


@dataclass(frozen=True, slots=True)
class ProxySpec:
    name: str
    label: str


PROXIES = (
    ProxySpec(FLOOR, "floor: Starlette + aiohttp"),
    ProxySpec("aiohttp-web", "aiohttp.web + aiohttp"),
    ProxySpec(GATEWAY, "gateway (full accounting)"),
)


@dataclass
class Target:
    """A running proxy under test."""

    spec: ProxySpec
    base_url: str
    key: str
    child: Child


@dataclass
class Options:
    reps: int = 3
    duration_s: float = 3.0
    ttft_duration_s: float = 1.5
    workloads: tuple[str, ...] = ALL_WORKLOAD_IDS
    proxies: tuple[str, ...] = tuple(p.name for p in PROXIES)
    mem_streams: int = 1000
    mem_rounds: int = 10
    mem_settle_s: float = 1.0
    # After the last round, wait (at most this long) for the proxy to close the connections the streams left in
    # its upstream pool (keep-alive: aiohttp's default 15 s, the gateway's 30 s) before the "settled" RSS.
    mem_pool_wait_s: float = 75.0
    loadgen: str = "auto"  # "auto" | "wrk" | "python"
    max_seconds: float = 900.0
    json_path: Path | None = None
    markdown: bool = False
    keep_logs: bool = False
    retries: int = 1  # extra tries of a repetition that other processes made noisy
    quiet_wait_s: float = 10.0  # the longest wait for a quiet machine before one repetition
    quiet_budget_s: float = 60.0  # the longest wait for a quiet machine in all
    gateway_src: Path | None = None  # run the gateway from this source tree (e.g. a git worktree)
    nice: int = 0  # scheduling priority of the bench and everything it starts (negative: root only)


@dataclass
class Run:
    """What a bench run measured, as the table and the target checks need it."""

    options: Options
    pinning: Pinning
    loadgen: str
    results: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    ceiling: dict[str, dict[str, float]] = field(default_factory=dict)
    idle_mb: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    quiet_waited_s: float = 0.0
    noisy_retries: int = 0
    background_cores: list[float] = field(default_factory=list)  # others' CPU during each kept repetition

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > self.options.max_seconds


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 repetition of 1 s, 200 slow streams x 2 rounds"
    )
    parser.add_argument("--reps", type=int, help="repetitions of each workload (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per run (default 3)")
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(ALL_WORKLOAD_IDS)}")
    parser.add_argument("--proxies", help=f"comma-separated subset of {','.join(p.name for p in PROXIES)}")
    parser.add_argument("--mem-streams", type=int, help="concurrent slow streams per memory round (default 1000)")
    parser.add_argument("--mem-rounds", type=int, help="memory rounds (default 10)")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk where installed, else the Python driver",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=900.0, help="stop starting new runs after this long (default 900)"
    )
    parser.add_argument(
        "--retries", type=int, help="extra tries of a repetition other processes made noisy (default 1; quick 0)"
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        help="seconds the run may spend in all waiting for other processes to leave the CPUs (default 60)",
    )
    parser.add_argument(
        "--gateway-src",
        type=Path,
        help="run the gateway from this source tree instead of the installed one, e.g. a `git worktree` of "
        "another commit, to compare two versions on the same machine",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the bench and all it starts at this niceness; on a machine shared with other work, "
        "-10 (as root) keeps that work from skewing the figures (it slows that work down meanwhile)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with the children's logs")
    args = parser.parse_args(argv)
    options = Options(
        loadgen=args.loadgen,
        max_seconds=args.max_seconds,
        json_path=args.json,
        markdown=args.markdown,
        keep_logs=args.keep_logs,
        gateway_src=args.gateway_src.resolve() if args.gateway_src else None,
        nice=args.nice,
    )
    if options.gateway_src is not None and not (options.gateway_src / "gateway" / "__init__.py").is_file():
        parser.error(f"--gateway-src {options.gateway_src} holds no gateway/ package")
    if args.quick:
        options.reps, options.duration_s, options.ttft_duration_s = 1, 1.0, 0.5
        options.mem_streams, options.mem_rounds, options.mem_settle_s, options.mem_pool_wait_s = 200, 2, 0.3, 0.0
        options.retries, options.quiet_wait_s, options.quiet_budget_s = 0, 1.0, 3.0
    if args.reps is not None:
        options.reps = max(1, args.reps)
    if args.duration is not None:
        options.duration_s = max(0.2, args.duration)
        options.ttft_duration_s = min(options.ttft_duration_s, options.duration_s)
    if args.mem_streams is not None:
        options.mem_streams = max(1, args.mem_streams)
    if args.mem_rounds is not None:
        options.mem_rounds = max(1, args.mem_rounds)
    if args.retries is not None:
        options.retries = max(0, args.retries)
    if args.quiet_budget is not None:
        options.quiet_budget_s = max(0.0, args.quiet_budget)
    if args.workloads:
        chosen = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
        unknown = sorted(set(chosen) - set(ALL_WORKLOAD_IDS))
        if unknown:
            parser.error(f"unknown workloads {unknown}; known: {','.join(ALL_WORKLOAD_IDS)}")
        options.workloads = chosen
    if args.proxies:
        chosen = tuple(p.strip() for p in args.proxies.split(",") if p.strip())
        known = {p.name for p in PROXIES}
        if set(chosen) - known:
            parser.error(f"unknown proxies {sorted(set(chosen) - known)}; known: {','.join(sorted(known))}")
        options.proxies = chosen if FLOOR in chosen else (FLOOR, *chosen)  # ratios need the floor
    return options


# -- starting the parts -------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The bench's environment without the operator's gateway settings, plus `extra`; `bench` importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def start_upstream(group: ProcessGroup, pinning: Pinning) -> str:
    port = free_port()
    child = group.start(
        "upstream", [sys.executable, "-m", "bench.upstream", "--port", str(port)], pinning.load_cpus, child_env()
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(url + "/healthz", child)
    return url


def start_floor(group: ProcessGroup, spec: ProxySpec, kind: str, upstream: str, pinning: Pinning) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", "bench.floors", kind, "--upstream", upstream, "--port", str(port)]
    child = group.start(spec.name, argv, pinning.proxy_cpus, child_env())
    url = f"http://127.0.0.1:{port}"
    _wait_for_post(url, "none", child)
    return Target(spec, url, "none", child)


def gateway_config(port: int, upstream: str) -> str:
    return f"""\
[server]
host = "127.0.0.1"
port = {port}

[usage]
flush_interval = 1.0

[[backends]]
name = "bench"
base_url = "{upstream}/v1"
api_key = "sk-bench-upstream-key"
pool = "primary"
models = ["bench", "bench-d200", "bench-d200-j50", "{MEMORY_MODEL}"]
rpm = 10000000          # the limiter is on, and never limits
tpm = 10000000000
"""


def start_gateway(
    group: ProcessGroup, spec: ProxySpec, workdir: Path, upstream: str, pinning: Pinning, source: Path | None
) -> Target:
    data_dir, config = workdir / "gateway-data", workdir / "gateway.toml"
    port = free_port()
    config.write_text(gateway_config(port, upstream))
    env = child_env(GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN)
    # `python -m` puts its working directory first on sys.path: run from the source tree to be compared,
    # else from the work dir, where the installed (editable) gateway is found.
    cwd = source if source is not None else workdir
    common = ["--data-dir", str(data_dir), "--config", str(config)]
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "key",
            "create",
            "bench",
            "--rpm",
            "10000000",
            "--budget-usd",
            "1000000",
            *common,
        ],
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    if created.returncode != 0 or not created.stdout.strip():
        raise BenchError(f"gateway key create failed ({created.returncode}): {created.stderr.decode()[-800:]}")
    key = created.stdout.decode().strip().splitlines()[0].strip()
    argv = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port), *common]
    child = group.start(spec.name, argv, pinning.proxy_cpus, env, cwd)
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(url + "/healthz", child)
    # Priced, so cost is computed on every request.
    for model in ("bench", "bench-d200", "bench-d200-j50", MEMORY_MODEL):
        request = urllib.request.Request(
            url + f"/api/pricing/{model}",
            data=orjson.dumps(PRICE),
            method="PUT",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise BenchError(f"the gateway refused a price for {model}: HTTP {response.status}")
    _wait_for_post(url, key, child)
    return Target(spec, url, key, child)


def _wait_for_post(url: str, key: str, child: Child, timeout_s: float = 30.0) -> None:
    """Until a chat completion goes through (a plain and a stream one), proving the whole path works."""
    deadline = time.monotonic() + timeout_s
    last = ""
    for body, marker in ((request_body("bench", False), b"chat.completion"), (request_body("bench", True), b"[DONE]")):
        while True:
            if child.popen.poll() is not None:
                raise BenchError(f"{child.name} exited with code {child.popen.returncode}:\n{child.log_tail()}")
            request = urllib.request.Request(
                url + "/v1/chat/completions",
                data=body,
                method="POST",
                headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = response.read()
                    if response.status == 200 and marker in answer:
                        break
                    last = f"HTTP {response.status}: {answer[:200]!r}"
            except OSError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise BenchError(f"{child.name} does not proxy a chat completion ({last}):\n{child.log_tail()}")
            time.sleep(0.05)


def request_body(model: str, stream: bool) -> bytes:
    """What an OpenAI SDK sends; a stream without stream_options, so the gateway must add include_usage."""
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in twenty words, please."},
        ],
        "max_tokens": 64,
        "temperature": 0.7,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


# -- running the workloads ----------------------------------------------------------------------


def body_file(workdir: Path, model: str, stream: bool) -> Path:
    path = workdir / f"body-{model}-{'stream' if stream else 'plain'}.json"
    if not path.exists():
        path.write_bytes(request_body(model, stream))
    return path


def measure(run: Run, target: Target, workload: Workload, workdir: Path, duration_s: float) -> dict[str, float]:
    """One repetition of a workload against one proxy: throughput, latency, TTFT, peak RSS."""
    load = Load(
        url=target.base_url + "/v1/chat/completions",
        body_file=body_file(workdir, workload.model, workload.stream),
        key=target.key,
        concurrency=workload.concurrency,
        duration_s=duration_s,
        stream=workload.stream,
    )
    cpus = run.pinning.load_cpus
    with PeakRss(target.child.pid) as peak:
        cpu_before = process_cpu_s(target.child.pid)
        if run.loadgen == "wrk":
            figures = run_wrk(load, cpus)
            cpu_s = process_cpu_s(target.child.pid) - cpu_before
            if workload.stream:  # wrk cannot see the first token: the driver measures it, briefly
                ttft = run_driver(dataclasses.replace(load, duration_s=run.options.ttft_duration_s), cpus)
                figures["ttft_p50_ms"], figures["ttft_p99_ms"] = ttft["ttft_p50_ms"], ttft["ttft_p99_ms"]
                figures["errors"] += ttft.get("errors", 0.0)
        else:
            figures = run_driver(load, cpus)
            cpu_s = process_cpu_s(target.child.pid) - cpu_before
    figures["peak_rss_mb"] = peak.peak_mb
    # CPU per request barely moves when other processes take CPU, unlike req/s: the steadier figure.
    figures["cpu_us_per_req"] = cpu_s * 1e6 / figures["requests"] if figures.get("requests") else math.nan
    return figures


QUIET_CORES = 0.10  # other processes using less than this is a quiet machine
NOISY_CORES = 0.20  # a repetition during which others used more is measured again


def background_meter(run: Run, group: ProcessGroup, targets: Sequence[Target]) -> BackgroundCpu:
    return BackgroundCpu(group, run.pinning.proxy_cpus, [t.child.pid for t in targets])


def wait_for_quiet(run: Run, group: ProcessGroup, targets: Sequence[Target], log: Callable[[str], None]) -> None:
    """On a shared machine, wait (within a budget) until other processes leave the CPUs alone."""
    options = run.options
    if options.nice < 0:
        return  # the proxy preempts others on its CPU: their use of it while it idles does not matter
    deadline = time.monotonic() + options.quiet_wait_s
    told = False
    while not run.out_of_time():
        with background_meter(run, group, targets) as background:
            time.sleep(0.3)
        if background.cores < QUIET_CORES:
            return
        now = time.monotonic()
        if now > deadline or run.quiet_waited_s >= options.quiet_budget_s:
            return
        run.quiet_waited_s += 0.3
        if not told:
            log(f"    other processes use {background.cores:.2f} of the proxy's CPU: waiting for them to settle")
            told = True


def measure_clean(
    run: Run,
    group: ProcessGroup,
    targets: Sequence[Target],
    target: Target,
    workload: Workload,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, float]:
    """`measure`, again (up to --retries times) when other processes took CPU during it; the quietest wins."""
    best: dict[str, float] | None = None
    for attempt in range(1 + run.options.retries):
        wait_for_quiet(run, group, targets, log)
        with background_meter(run, group, targets) as background:
            figures = measure(run, target, workload, workdir, run.options.duration_s)
        figures["background_cores"] = background.cores
        figures["background_machine_cores"] = background.machine_cores
        if best is None or background.cores < best["background_cores"]:
            best = figures
        if background.cores < NOISY_CORES or attempt == run.options.retries or run.out_of_time():
            break
        run.noisy_retries += 1
        log(f"    noisy: other processes took {background.cores:.2f} of the proxy's CPU during that run; again")
    assert best is not None
    run.background_cores.append(best["background_cores"])
    return best


def run_workloads(
    run: Run, group: ProcessGroup, targets: Sequence[Target], workdir: Path, log: Callable[[str], None]
) -> None:
    options = run.options
    for workload in WORKLOADS:
        if workload.id not in options.workloads:
            continue
        reps: dict[str, list[dict[str, float]]] = {t.spec.name: [] for t in targets}
        for rep in range(options.reps):
            rotated = list(targets[rep % len(targets) :]) + list(targets[: rep % len(targets)])
            for target in rotated:
                if run.out_of_time():
                    log(f"  time budget of {options.max_seconds:.0f}s spent: skipping the rest")
                    break
                figures = measure_clean(run, group, targets, target, workload, workdir, log)
                reps[target.spec.name].append(figures)
                log(
                    f"  {workload.label:<32} rep {rep + 1}/{options.reps}  {target.spec.label:<28} "
                    f"{figures['rps']:>8,.0f} req/s  p50 {figures['lat_p50_ms']:7.2f} ms  "
                    f"p99 {figures['lat_p99_ms']:7.2f} ms"
                    + (f"  ttft {figures['ttft_p50_ms']:.2f} ms" if "ttft_p50_ms" in figures else "")
                    + (f"  ERRORS {figures['errors']:.0f}" if figures.get("errors") else "")
                    + (
                        f"  (others on its CPU: {figures['background_cores']:.2f})"
                        if figures["background_cores"] >= QUIET_CORES
                        else ""
                    )
                )
        run.results[workload.id] = {name: combine(figure_reps) for name, figure_reps in reps.items() if figure_reps}


def combine(repetitions: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Medians of the repetitions; peak RSS and errors are the largest and the sum."""
    combined = median_figures(repetitions)
    peaks = [r["peak_rss_mb"] for r in repetitions if "peak_rss_mb" in r]
    if peaks:
        combined["peak_rss_mb"] = max(peaks)
    combined["errors"] = sum(r.get("errors", 0.0) for r in repetitions)
    return combined


def _settled_rss(pid: int, sockets_before: int, options: Options) -> dict[str, float]:
    """RSS once the proxy holds no more sockets than before the rounds, if that happens within the wait."""
    if options.mem_pool_wait_s <= 0:
        return {}
    started = time.monotonic()
    while open_sockets(pid) > sockets_before:
        if time.monotonic() - started > options.mem_pool_wait_s:
            return {}
        time.sleep(1.0)
    waited = time.monotonic() - started
    time.sleep(options.mem_settle_s)
    return {"settled_mb": rss_mb(pid), "settle_s": waited}


def run_memory(run: Run, target: Target, workdir: Path, log: Callable[[str], None]) -> dict[str, float]:
    """Rounds of N concurrent slow streams: peak RSS, RSS after each round, growth from round 1 to the last."""
    options = run.options
    pid = target.child.pid
    load = Load(
        url=target.base_url + "/v1/chat/completions",
        body_file=body_file(workdir, MEMORY_MODEL, True),
        key=target.key,
        concurrency=options.mem_streams,
        duration_s=0.0,
        stream=True,
        once=True,
    )
    time.sleep(options.mem_settle_s)
    before = rss_mb(pid)
    sockets_before = open_sockets(pid)
    peaks: list[float] = []
    afters: list[float] = []
    latencies: list[float] = []
    ttfts: list[float] = []
    errors = 0.0
    for round_index in range(options.mem_rounds):
        if run.out_of_time():
            log(f"  time budget of {options.max_seconds:.0f}s spent: memory rounds stop at {round_index}")
            break
        with PeakRss(pid) as peak:
            figures = run_driver(load, run.pinning.load_cpus)
        time.sleep(options.mem_settle_s)
        peaks.append(peak.peak_mb)
        afters.append(rss_mb(pid))
        latencies.append(figures.get("lat_p50_ms", math.nan))
        ttfts.append(figures.get("ttft_p50_ms", math.nan))
        errors += figures.get("errors", 0.0)
        log(
            f"  memory {target.spec.label:<28} round {round_index + 1}/{options.mem_rounds}: "
            f"{figures['requests']:.0f} streams, peak {peak.peak_mb:.1f} MB, after {afters[-1]:.1f} MB, "
            f"stream p50 {figures.get('lat_p50_ms', math.nan):.0f} ms" + (f", ERRORS {errors:.0f}" if errors else "")
        )
    if not afters:
        return {}
    settled = _settled_rss(pid, sockets_before, options)
    if settled:
        log(
            f"  memory {target.spec.label:<28} settled: {settled['settled_mb']:.1f} MB once its pool closed "
            f"({settled['settle_s']:.0f} s after the last round)"
        )
    return {
        **settled,
        "idle_mb": run.idle_mb.get(target.spec.name, math.nan),
        "before_mb": before,
        "peak_mb": max(peaks),
        "after_first_mb": afters[0],
        "after_last_mb": afters[-1],
        "growth_mb": afters[-1] - afters[0] if len(afters) >= 2 else math.nan,
        "rounds": float(len(afters)),
        "lat_p50_ms": median_figures([{"v": v} for v in latencies])["v"],
        "ttft_p50_ms": median_figures([{"v": v} for v in ttfts])["v"],
        "errors": errors,
    }


def measure_ceiling(run: Run, upstream: str, workdir: Path) -> None:
    """The fake upstream alone under the same load generator: it must be far above every proxy."""
    for workload in WORKLOADS:
        if workload.id not in ("ns64", "st64") or workload.id not in run.options.workloads:
            continue
        load = Load(
            url=upstream + "/v1/chat/completions",
            body_file=body_file(workdir, workload.model, workload.stream),
            key="none",
            concurrency=workload.concurrency,
            duration_s=run.options.duration_s,
            stream=workload.stream,
        )
        runner = run_wrk if run.loadgen == "wrk" else run_driver
        run.ceiling[workload.id] = runner(load, run.pinning.load_cpus)


def warm_up(run: Run, targets: Sequence[Target], workdir: Path) -> None:
    """Imports, caches and connection pools filled before anything counts (streams too, unless quick)."""
    runner = run_wrk if run.loadgen == "wrk" else run_driver
    kinds = (False, True) if run.options.reps > 1 else (False,)
    for target in targets:
        for stream in kinds:
            load = Load(
                url=target.base_url + "/v1/chat/completions",
                body_file=body_file(workdir, "bench", stream),
                key=target.key,
                concurrency=16,
                duration_s=1.0,
                stream=stream,
            )
            runner(load, run.pinning.load_cpus)


# -- the whole run ------------------------------------------------------------------------------


def execute(options: Options, log: Callable[[str], None]) -> Run:
    loadgen = options.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if wrk_path() else "python"
    elif loadgen == "wrk" and not wrk_path():
        raise BenchError("--loadgen wrk, but wrk is not installed (apt-get install wrk)")
    run = Run(options, Pinning.for_machine(), loadgen)
    raise_fd_limit()
    if options.nice:
        try:  # inherited by every child: the proxies, the fake upstream and the load generators alike
            os.setpriority(os.PRIO_PROCESS, 0, options.nice)
        except PermissionError:
            raise BenchError(f"--nice {options.nice} needs root (or CAP_SYS_NICE)") from None
    if run.pinning.load_cpus is not None:
        os.sched_setaffinity(
            0, {int(c) for c in run.pinning.load_cpus.split(",")}
        )  # keep the bench off the proxy's CPU
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    group = ProcessGroup(workdir)
    log(f"bench: {run.pinning.describe()}; load generator: {loadgen}; work dir {workdir}")
    if options.nice:
        log(f"bench: running at niceness {options.nice}")
    if options.gateway_src is not None:
        log(f"bench: the gateway runs from {options.gateway_src}")
    try:
        with stopping_on_signals(group.stop_all):
            upstream = start_upstream(group, run.pinning)
            targets: list[Target] = []
            for spec in PROXIES:
                if spec.name not in options.proxies:
                    continue
                if spec.name == GATEWAY:
                    targets.append(start_gateway(group, spec, workdir, upstream, run.pinning, options.gateway_src))
                else:
                    kind = "starlette" if spec.name == FLOOR else "aiohttp-web"
                    targets.append(start_floor(group, spec, kind, upstream, run.pinning))
            log("bench: every part answers; warming up")
            warm_up(run, targets, workdir)
            time.sleep(options.mem_settle_s)
            for target in targets:
                run.idle_mb[target.spec.name] = rss_mb(target.child.pid)
            measure_ceiling(run, upstream, workdir)
            run_workloads(run, group, targets, workdir, log)
            if "mem" in options.workloads:
                for target in targets:
                    result = run_memory(run, target, workdir, log)
                    if result:
                        run.memory[target.spec.name] = result
    finally:
        group.stop_all()
        if options.keep_logs:
            log(f"bench: logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return run


def render(run: Run, markdown: bool) -> str:
    proxies = [(p.name, p.label) for p in PROXIES if p.name in run.options.proxies]
    workloads = [(w.id, w.label) for w in WORKLOADS if w.id in run.results]
    results: dict[str, dict[str, dict[str, float]]] = {k: dict(v) for k, v in run.results.items()}
    if run.memory:
        workloads.append(("mem", f"{run.options.mem_streams:,} slow streams x {run.options.mem_rounds}"))
        results["mem"] = {
            name: {
                "lat_p50_ms": m["lat_p50_ms"],
                "ttft_p50_ms": m["ttft_p50_ms"],
                "peak_rss_mb": m["peak_mb"],
                "errors": m["errors"],
            }
            for name, m in run.memory.items()
        }
    rows = report.table_rows(workloads, proxies, results, FLOOR)
    table = report.render_markdown if markdown else report.render_plain
    out = [table(rows)]
    if run.memory:
        out += ["", "Memory (RSS of the proxy process):", table(report.memory_rows(run.memory, proxies, FLOOR))]
    idle = ", ".join(f"{label} {run.idle_mb[name]:.1f} MB" for name, label in proxies if name in run.idle_mb)
    out += ["", f"Idle RSS after warm-up: {idle}"]
    if run.background_cores:
        out.append(
            f"Other processes on the proxy's CPU during the kept repetitions: median "
            f"{median(run.background_cores):.2f} of it, at most {max(run.background_cores):.2f}; "
            f"{run.noisy_retries} noisy repetitions measured again; {run.quiet_waited_s:.0f} s spent waiting for quiet"
        )
    for workload_id, figures in run.ceiling.items():
        floor_rps = run.results.get(workload_id, {}).get(FLOOR, {}).get("rps", math.nan)
        times = f" ({figures['rps'] / floor_rps:.1f}x the floor)" if math.isfinite(floor_rps) else ""
        out.append(f"Fake upstream alone, {workload_id}: {figures['rps']:,.0f} req/s{times}")
    if GATEWAY in run.options.proxies:
        checks = report.check_targets(results, run.memory, FLOOR, GATEWAY, run.idle_mb.get(GATEWAY, math.nan))
        out += ["", report.render_checks(checks, markdown)]
    return "\n".join(out)


def to_json(run: Run) -> bytes:
    return orjson.dumps(
        {
            "loadgen": run.loadgen,
            "pinning": run.pinning.describe(),
            "reps": run.options.reps,
            "duration_s": run.options.duration_s,
            "results": run.results,
            "memory": run.memory,
            "idle_mb": run.idle_mb,
            "ceiling": run.ceiling,
            "background_cores": run.background_cores,
            "noisy_retries": run.noisy_retries,
        },
        option=orjson.OPT_INDENT_2,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    try:
        run = execute(options, log)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(
        f"\nmake bench: {run.pinning.describe()}; load generator {run.loadgen}; "
        f"median of {options.reps} x {options.duration_s:g} s; {time.monotonic() - started:.0f} s in all\n"
    )
    print(render(run, options.markdown))
    if options.json_path is not None:
        options.json_path.write_bytes(to_json(run))
    return 0
