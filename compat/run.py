"""make compat: real 2023 clients through the real proxy process against the simulator process.

    python compat/run.py [--write README.md] [--only NAME ...] [--proxy-env KEY=VALUE ...]

Starts `python -m proxy.simulator` twice (a healthy upstream, and one started with
`--fault error-after:5`, since SDKs cannot send x-sim-fault) and `python -m proxy` in front of
each, on its defaults except `upstream_url` and its two ports (others share this machine). A second
pair of proxies runs with `legacy.pings = drop`, used only for a client that fails on the
defaults, to find out whether that setting is what it needs.

Each client (compat/clients/, each in its own environment made by compat/Makefile.inc) runs as a
subprocess and prints one JSON line; this script judges it against the text the simulator is known
to send (proxy.simulator.expected_text), so it does not depend on which upstream route the proxy
takes (/v1/complete or /v1/messages). Per client: a streamed and a non-streamed completion of 50
tokens, a failing upstream (an overloaded_error after 5 events: the failure must reach the
caller), and a ladder of long streamed completions up to 60,000 tokens, bisected where the
client breaks. The table goes to stdout and, with --write, into the README between
<!-- compat:begin --> and <!-- compat:end -->.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from proxy.simulator import expected_text  # noqa: E402

CLIENTS = ROOT / "compat" / "clients"
JS = CLIENTS / "js"
VENVS = ROOT / ".venvs"
SHORT = 50  # tokens of the ordinary completions
FAIL_AFTER = 5  # completion events before the failing upstream sends its error event
# long completions, tokens. Not beyond 60,000: one 100,000-token stream to a slow reader took the
# proxy to 2-6 GB of memory on this shared machine (the run reports the proxies' peak), and 60,000
# is already well past the one hard limit found (aiohttp 3.8's, about 23,000 here)
LADDER = (2_000, 10_000, 20_000, 40_000, 60_000)
BISECT_STEPS = 4
SLOW_S = 10.0  # a long stream that takes longer than this is reported (curl: about 2 s)
STOP_CLIMBING_S = 30.0  # a long stream this slow ends the ladder for its client
LONG_TIMEOUT_S = 60.0  # a long stream with no result by then counts as failed
ITER_LINES = (
    "cause: requests' `iter_lines()` reads 512 bytes at a time and re-joins the unfinished line "
    "at each read, so each long event costs time quadratic in its length (compare the "
    "`iter_lines(chunk_size=None)` row; timings on this shared 2-core machine vary several-fold "
    "from run to run)"
)
PING_EVERY = 5  # the real API pings now and then; the simulator does it every 5 events
BEGIN, END = "<!-- compat:begin -->", "<!-- compat:end -->"


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"compat: {url} did not answer within {within_s} s")
        time.sleep(0.1)


class Processes:
    """The simulators and proxies of one run; stopped (by their own pids) on exit."""

    def __init__(self, logdir: Path, proxy_env: dict[str, str]) -> None:
        self.logdir = logdir
        self.proxy_env = proxy_env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.logdir / f"{name}.log").open("wb")
        self.names.append(name)
        self.procs.append(
            subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        )

    def simulator(self, name: str, fault: str = "") -> str:
        port = free_port()
        argv = [sys.executable, "-m", "proxy.simulator", "--port", str(port)]
        argv += ["--tokens", str(max(LADDER) * 2), "--ping-every", str(PING_EVERY)]
        if fault:
            argv += ["--fault", fault]
        self._start(name, argv, os.environ.copy())
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/_sim/stats")
        return url

    def proxy(self, name: str, upstream: str, **settings: str) -> str:
        # the proxy's defaults: nothing inherited from this shell's LEGACY_PROXY_* variables
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGACY_PROXY_")}
        port, admin = free_port(), free_port()
        env.update(
            LEGACY_PROXY_UPSTREAM_URL=upstream,
            LEGACY_PROXY_PORT=str(port),
            LEGACY_PROXY_ADMIN_HOST="127.0.0.1",
            LEGACY_PROXY_ADMIN_PORT=str(admin),
        )
        env.update({f"LEGACY_PROXY_{k.upper()}": v for k, v in self.proxy_env.items()})
        env.update({f"LEGACY_PROXY_{k.upper()}": v for k, v in settings.items()})
        self._start(name, [sys.executable, "-m", "proxy"], env)
        wait_http(f"http://127.0.0.1:{admin}/readyz")
        return f"http://127.0.0.1:{port}"

    def peak_rss_mb(self) -> dict[str, float]:
        """Each proxy's peak resident memory (VmHWM), for the run's output."""
        out = {}
        for name, p in zip(self.names, self.procs, strict=True):
            if not name.startswith("proxy"):
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out[name] = int(line.split()[1]) / 1024
        return out

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@dataclass(frozen=True)
class Stack:
    """The proxies a client is run against, for one proxy setting."""

    ok: str  # in front of the healthy simulator
    failing: str  # in front of the simulator that sends an error event after FAIL_AFTER events
    failing_sim: str  # that simulator itself: how many requests reached the upstream


# --- clients -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    name: str  # the table's first column
    key: str  # for --only
    argv: tuple[str, ...]  # the command, without --base-url / --scenario / --max-tokens
    installed: Path  # exists when the client's environment is ready
    versions: str  # shown in the table: what is pinned
    nostream: bool = True  # the library can make a non-streamed request
    base_url_note: str = ""  # how the client is pointed at the proxy, when it is not obvious
    timeout: float = 120.0
    repeat: int = 1  # streamed runs of SHORT tokens, for a client whose result varies
    long_as: str = ""  # no long-stream ladder: the transport is that of this row's client
    slow_cause: str = ""  # why long streams are slow in this client, when they are
    flaky_cause: str = ""  # why some of its repeated streamed runs come back wrong, when they do
    unsurfaced_cause: str = ""  # why a failed stream looks like success to it, when it does


def py(env: str, script: str, *extra: str) -> tuple[str, ...]:
    return (str(VENVS / f"compat-{env}" / "bin" / "python"), str(CLIENTS / script), *extra)


def pinned(env: str, *names: str) -> str:
    """The versions of the named packages, read from the client's frozen requirements."""
    req = ROOT / "compat" / "requirements" / f"{env}.txt"
    pins = dict(
        line.split("==", 1) for line in req.read_text().splitlines() if "==" in line
    )
    norm = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    return ", ".join(f"{n} {norm.get(n, '?')}" for n in names)


def js_version(package: str) -> str:
    lock = json.loads((JS / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{package}"]["version"])


def clients() -> list[Client]:
    out = [
        Client(
            "`requests` + `iter_lines`",
            "requests",
            py("requests", "requests_client.py"),
            VENVS / "compat-requests" / ".installed",
            pinned("requests", "requests", "urllib3"),
            slow_cause=ITER_LINES + ". What to do: `iter_lines(chunk_size=None)` (its own row)",
        ),
        Client(
            "`requests` + `iter_lines(chunk_size=None)`",
            "requests-chunk-none",
            py("requests", "requests_client.py", "--chunk-size", "none"),
            VENVS / "compat-requests" / ".installed",
            pinned("requests", "requests", "urllib3"),
        ),
        Client(
            "`sseclient-py`",
            "sseclient",
            py("sseclient", "sseclient_client.py"),
            VENVS / "compat-sseclient" / ".installed",
            pinned("sseclient", "sseclient-py", "requests"),
            nostream=False,
            slow_cause="cause: sseclient-py builds each event from the response's 128-byte "
            "pieces with `bytes +=`, so each long event costs time quadratic in its length, and "
            "the timing depends on how many long snapshots arrive. What to do: shorter "
            "completions, or a client that splits whole chunks (`httpx-sse`, curl)",
        ),
        Client(
            "`httpx-sse`",
            "httpx-sse",
            py("httpx-sse", "httpx_sse_client.py"),
            VENVS / "compat-httpx-sse" / ".installed",
            pinned("httpx-sse", "httpx-sse", "httpx"),
            nostream=False,
        ),
        Client(
            "`aiohttp-sse-client`",
            "aiohttp-sse-client",
            py("aiohttp-sse-client", "aiohttp_sse_client_client.py"),
            VENVS / "compat-aiohttp-sse-client" / ".installed",
            pinned("aiohttp-sse-client", "aiohttp-sse-client", "aiohttp"),
            nostream=False,
        ),
        Client(
            "`aiohttp-sse-client`, `ClientSession(read_bufsize=1 MiB)`",
            "aiohttp-sse-client-bufsize",
            py("aiohttp-sse-client", "aiohttp_sse_client_client.py", "--read-bufsize", "1048576"),
            VENVS / "compat-aiohttp-sse-client" / ".installed",
            pinned("aiohttp-sse-client", "aiohttp-sse-client", "aiohttp"),
            nostream=False,
        ),
        Client(
            "curl",
            "curl",
            (sys.executable, str(CLIENTS / "curl_client.py")),
            Path(shutil.which("curl") or "/nonexistent/curl"),
            curl_version(),
        ),
        Client(
            "`@microsoft/fetch-event-source`",
            "fetch-event-source",
            ("node", str(JS / "fetch_event_source.mjs"), "--variant", "rethrow"),
            JS / "node_modules" / ".installed",
            f"@microsoft/fetch-event-source {js_version('@microsoft/fetch-event-source')}"
            f", Node {node_version()} fetch",
            nostream=False,
        ),
        Client(
            "`eventsource-parser`",
            "eventsource-parser",
            ("node", str(JS / "eventsource_parser.mjs")),
            JS / "node_modules" / ".installed",
            f"eventsource-parser {js_version('eventsource-parser')}, Node {node_version()} fetch",
            nostream=False,
        ),
    ]
    for lc in ("0.0.150", "0.0.190", "0.0.210"):
        env = f"langchain-{lc}"
        for cls, variant in (("Anthropic", "llm"), ("ChatAnthropic", "chat")):
            for mode in ("sync", "async"):
                out.append(
                    Client(
                        f"LangChain {lc} `{cls}`, {mode}",
                        f"langchain-{lc}-{variant}-{mode}",
                        py(env, "langchain_client.py", "--variant", f"{variant}-{mode}"),
                        VENVS / f"compat-{env}" / ".installed",
                        pinned(env, "langchain", "anthropic", "aiohttp", "requests"),
                        base_url_note=""
                        if lc == "0.0.210"
                        else "base URL: `model.client.api_url = ...` (no option in this version)",
                        long_as="" if variant == "llm" else f"LangChain {lc} `Anthropic`, {mode}",
                        slow_cause=ITER_LINES
                        + " inside anthropic 0.2.x. What to do: shorter completions, or anthropic "
                        "0.3+ (API 2023-06-01, incremental events, passed through untouched)"
                        if mode == "sync"
                        else "",
                    )
                )
    for mode in ("sync", "async"):
        out.append(
            Client(
                f"llama-index 0.6.20 `LLMPredictor`, {mode}",
                f"llama-index-{mode}",
                py("llama-index-0.6.20", "llama_index_client.py", "--variant", mode),
                VENVS / "compat-llama-index-0.6.20" / ".installed",
                pinned("llama-index-0.6.20", "llama-index", "langchain", "anthropic", "aiohttp"),
                base_url_note="base URL: `llm.client.api_url = ...` (LangChain 0.0.190)",
                repeat=5 if mode == "sync" else 1,
                flaky_cause="`StreamingGeneratorCallbackHandler.get_response_gen()` checks its "
                "queue is empty, "
                "then whether the request thread is done: when the thread queues the last tokens "
                "and finishes between the two checks, the generator ends without them (a fast "
                "stream does that). What to do: `predict()` (non-streamed column), or drain the "
                "queue once more after the done flag in a handler of your own",
                unsurfaced_cause="`LLMPredictor.stream()` runs the request in a thread whose "
                "exception goes to `threading.excepthook` (stderr), and "
                "`on_llm_error` only sets the handler's done flag. What to do: check the text's "
                "length against what you expect, or use `predict()`, which raises",
                long_as="" if mode == "sync" else "LangChain 0.0.190 `Anthropic`, async",
                slow_cause=ITER_LINES + " inside anthropic 0.2.x. What to do: shorter completions",
            )
        )
    return out


def curl_version() -> str:
    try:
        first = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "curl (not installed)"
    return " ".join(first.split()[:2])


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "(not installed)"


# --- running and judging -----------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool  # the library returned the whole, right text
    text_ok: bool
    error: str  # "ErrorClass: message" when the library raised
    seconds: float
    cpu: float = 0.0  # the client process's own CPU time (user + system), seconds
    raw: dict[str, Any] = field(default_factory=dict)


def run_client(
    c: Client, base_url: str, scenario: str, tokens: int, timeout: float | None = None
) -> Outcome:
    timeout = timeout or c.timeout
    argv = [*c.argv, "--base-url", base_url, "--scenario", scenario, "--max-tokens", str(tokens)]
    argv += ["--timeout", str(timeout)]
    started, cpu0 = time.monotonic(), children_cpu()
    try:
        proc = subprocess.run(argv, cwd=CLIENTS, capture_output=True, timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        return Outcome(False, False, "Timeout: the client process hung", timeout + 15)
    seconds = time.monotonic() - started
    cpu = children_cpu() - cpu0
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return Outcome(False, False, f"no result: {(err or ['?'])[-1][:200]}", seconds, cpu)
    text = out.get("text")
    want = expected_text(tokens)
    # LangChain's chat models strip the completion's leading space: same text
    text_ok = isinstance(text, str) and text.strip() == want.strip()
    if not out.get("ok"):
        error = f"{out.get('error_class')}: {out.get('error')}"
    elif not text_ok:
        size = len(text) if isinstance(text, str) else 0
        error = f"wrong text, without an error: {size} of {len(want)} characters"
    else:
        error = ""
    return Outcome(bool(out.get("ok")) and text_ok, text_ok, error, seconds, cpu, out)


def children_cpu() -> float:
    """CPU seconds used so far by this script's finished child processes (the clients; the
    servers are still running, so they are not counted)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def event_bytes(tokens: int) -> int:
    """The length of the longest legacy event line of a stream of ``tokens`` tokens."""
    final = {"completion": expected_text(tokens), "stop_reason": "max_tokens", "stop": None,
             "model": "claude-2.1", "log_id": "compl_" + "0" * 24, "truncated": False,
             "exception": None}  # fmt: skip
    return len(b"data: " + json.dumps(final, ensure_ascii=False, separators=(",", ":")).encode())


@dataclass
class LongResult:
    passed: int = 0  # most tokens that came through whole
    failed: int = 0  # fewest tokens that did not (0: none did)
    error: str = ""
    seconds: float = 0.0
    slowest: float = 0.0  # the longest passing run, seconds
    slowest_tokens: int = 0
    slowest_cpu: float = 0.0  # the client's own CPU seconds in that run
    failed_cpu: float = 0.0


def upstream_requests(sim: str) -> int:
    """Requests the simulator has answered so far (its /_sim/stats)."""
    with urllib.request.urlopen(sim + "/_sim/stats", timeout=10) as resp:
        return int(json.load(resp)["requests"])


def refetch_after_cut(c: Client, stack: Stack, log: Any) -> tuple[str, str]:
    """fetch-event-source without an `onerror` that throws (its README's example): how many
    times it POSTs the same request when the stream is cut, and how many of those reach the
    upstream (each one that does is a new, paid completion)."""
    linger = 3
    argv = [*c.argv, "--base-url", stack.failing, "--scenario", "stream"]
    argv += ["--max-tokens", str(SHORT), "--variant", "default-onerror", "--linger", str(linger)]
    before = upstream_requests(stack.failing_sim)
    proc = subprocess.run(argv, cwd=CLIENTS, capture_output=True, timeout=60)
    paid = upstream_requests(stack.failing_sim) - before
    try:
        opens = int(json.loads(proc.stdout.decode().strip().splitlines()[-1])["opens"])
    except (IndexError, ValueError, KeyError):
        return ("with no `onerror`: could not measure (see the run's output)", "")
    log(f"  failing upstream, no onerror: {opens} POSTs in {linger} s, {paid} reached it")
    if paid <= 1:
        return (
            f"with no `onerror` that throws (its README's example), a cut stream is POSTed again "
            f"every second ({opens} POSTs in {linger} s), but only the first reached the "
            "upstream: every retry was refused by the proxy",
            "`fetch-event-source` retries every error after 1 s unless `onerror` throws. It "
            "sends `Accept: text/event-stream`, so the proxy gives its first event an `id:` "
            "line; the retry carries `Last-Event-ID` and is answered 400 without being "
            "forwarded (docs/wire-format.md, rule 5). What to do: throw in `onerror`, or the "
            "client keeps retrying (for free, but for ever)",
        )
    return (
        f"with no `onerror` that throws (its README's example), a cut stream is POSTed again: "
        f"{opens} POSTs in {linger} s, {paid} of them new completions upstream",
        "`fetch-event-source` retries every error after 1 s unless `onerror` throws, and these "
        "retries carried no `Last-Event-ID` the proxy could refuse. What to do: throw in "
        "`onerror` (this row's client does, and its failure surfaces)",
    )


def probe_long(c: Client, base_url: str, log: Any) -> LongResult:
    res = LongResult()
    started = time.monotonic()
    for n in LADDER:
        o = run_client(c, base_url, "stream", n, LONG_TIMEOUT_S)
        log(f"    long {n:>7,} tokens: {'ok' if o.ok else o.error} ({o.seconds:.1f} s)")
        if o.ok:
            res.passed = n
            if o.seconds > res.slowest:
                res.slowest, res.slowest_tokens, res.slowest_cpu = o.seconds, n, o.cpu
            if o.seconds > STOP_CLIMBING_S:
                break  # slow enough to report; a longer one would only make the run longer
            continue
        res.failed, res.error, res.failed_cpu = n, o.error, o.cpu
        break
    # only a raised error marks a sharp limit; a timeout (a client too slow for the run) or a
    # wrong text (a race) would only bisect noise
    if res.failed and not res.error.startswith(("Timeout", "wrong text")):
        lo, hi = res.passed, res.failed
        for _ in range(BISECT_STEPS):
            mid = (lo + hi) // 2
            o = run_client(c, base_url, "stream", mid, LONG_TIMEOUT_S)
            log(f"    long {mid:>7,} tokens: {'ok' if o.ok else o.error} ({o.seconds:.1f} s)")
            if o.ok:
                lo = mid
                if o.seconds > res.slowest:
                    res.slowest, res.slowest_tokens, res.slowest_cpu = o.seconds, mid, o.cpu
            else:
                hi, res.error, res.failed_cpu = mid, o.error, o.cpu
        res.passed, res.failed = lo, hi
    res.seconds = time.monotonic() - started
    return res


@dataclass
class Row:
    client: Client
    streamed: str = ""
    nonstreamed: str = ""
    failure: str = ""
    setting: str = ""
    # (what was measured, its cause and what a user can do); causes become numbered notes
    limits: list[tuple[str, str]] = field(default_factory=list)


def short(err: str, n: int = 90) -> str:
    err = " ".join(err.split()).replace("|", "\\|")
    return err if len(err) <= n else err[: n - 1] + "…"


def install_failure(c: Client) -> str:
    """Why a client's environment is missing: the last error line of its install log."""
    log = c.installed.parent / "install.log"
    if not log.exists():
        return f"`{c.installed}` is missing (run `make compat-clients`)"
    errors = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("ERROR")]
    return f"`{short(errors[-1] if errors else 'see ' + str(log), 120)}`"


def check_client(c: Client, stacks: dict[str, Stack], log: Any) -> Row:
    row = Row(c)
    if not c.installed.exists():
        row.streamed = f"**not installable**: {install_failure(c)}"
        row.nonstreamed = row.failure = "not run"
        return row
    setting = "default"
    first = run_client(c, stacks["default"].ok, "stream", SHORT)
    log(f"  stream: {'ok' if first.ok else first.error} ({first.seconds:.1f} s)")
    runs = [first] + [
        run_client(c, stacks["default"].ok, "stream", SHORT) for _ in range(c.repeat - 1)
    ]
    good = sum(o.ok for o in runs)
    bad = next((o.error for o in runs if not o.ok), "")
    if c.repeat > 1:
        log(f"  stream x{c.repeat}: {good} whole" + (f", e.g. {bad}" if bad else ""))
    if good == c.repeat:
        row.streamed = "yes" if c.repeat == 1 else f"yes ({good} of {c.repeat} runs)"
    elif good or all(o.raw.get("ok") for o in runs):
        # some runs whole, or the library returned normally with the wrong text: not a ping
        row.streamed = f"**no**: {good} of {c.repeat} runs whole, else `{short(bad, 60)}`"
        if c.flaky_cause:
            row.limits.append(("streamed text empty or cut, without an error", c.flaky_cause))
    else:
        again = run_client(c, stacks["pings=drop"].ok, "stream", SHORT)
        log(f"  stream, pings = drop: {'ok' if again.ok else again.error}")
        if again.ok:
            setting = "pings=drop"
            row.streamed = "yes, with `legacy.pings = drop`"
            row.setting = "`legacy.pings = drop`"
            row.limits.append(
                (f"on the defaults: `{short(first.error, 40)}` at the first ping", PING_CAUSE)
            )
        else:
            row.streamed = f"**no**: `{short(first.error)}`"
    stack = stacks[setting]
    if c.nostream:
        o = run_client(c, stack.ok, "nostream", SHORT)
        log(f"  nostream: {'ok' if o.ok else o.error} ({o.seconds:.1f} s)")
        row.nonstreamed = "yes" if o.ok else f"**no**: `{short(o.error)}`"
    else:
        row.nonstreamed = "n/a (SSE only)"
    o = run_client(c, stack.failing, "stream", SHORT)
    log(f"  failing upstream: {o.error or 'returned normally'} ({o.seconds:.1f} s)")
    if not o.raw.get("ok") and o.error and not o.error.startswith(("Timeout", "no result")):
        row.failure = f"yes: `{short(o.error, 70)}`"
    elif not o.raw.get("ok"):
        row.failure = f"**no**: `{short(o.error, 70)}`"
    else:
        got = o.raw.get("text")
        size = len(got) if isinstance(got, str) else 0
        row.failure = f"**no**: returned {size} characters as if complete"
        if c.unsurfaced_cause:
            row.limits.append(("a failed stream looks complete", c.unsurfaced_cause))
    if c.key == "fetch-event-source":
        row.limits.append(refetch_after_cut(c, stack, log))
    if c.long_as:
        row.limits.append((f"long streams: the same transport as {c.long_as}", ""))
        return row
    lr = probe_long(c, stack.ok, log)
    kib = event_bytes(lr.passed) / 1024
    slow = lr.slowest > SLOW_S
    took = f"{lr.slowest_tokens:,} tokens took {lr.slowest:.0f} s"
    took += f" ({lr.slowest_cpu:.0f} s client CPU)"
    if lr.failed and "Timeout" in lr.error:
        row.limits.append(
            (
                f"long streams: whole up to {lr.passed:,} tokens ({kib:,.0f} KiB event)"
                + (f", {took}" if slow else "")
                + f"; no result within {LONG_TIMEOUT_S:.0f} s at {lr.failed:,} "
                f"({lr.failed_cpu:.0f} s client CPU)",
                c.slow_cause,
            )
        )
    elif lr.failed:
        row.limits.append(
            (
                f"long streams: whole at {lr.passed:,} tokens ({kib:,.0f} KiB event), fails at "
                f"{lr.failed:,} ({event_bytes(lr.failed) / 1024:,.0f} KiB): "
                f"`{short(lr.error, 60)}`" + (f"; {took}" if slow else ""),
                cause_of(lr.error) or (c.flaky_cause if "wrong text" in lr.error else ""),
            )
        )
    else:
        row.limits.append(
            (
                f"long streams: whole up to {lr.passed:,} tokens ({kib:,.0f} KiB event)"
                + (f", {took}" if slow else f", each within {lr.slowest:.0f} s")
                + ("" if lr.passed == max(LADDER) else "; longer not tried, being this slow"),
                c.slow_cause if slow else "",
            )
        )
    return row


# --- the table ---------------------------------------------------------------------------------

PING_CAUSE = (
    "The client reads `completion` from every `data:` line, and a legacy ping is `event: ping` "
    "with `data: {}`. What to do: set `legacy.pings = drop` (measured: the row's streamed column), "
    "or skip events named `ping` in the client"
)

# What a measured limit means and what to do about it, by the error it shows (filled in from
# reading each library's code; the figures in the row are measured by this run).
CAUSES = (
    (
        "Chunk too big",
        "cause: aiohttp 3.8's line reader (`async for line in response.content`) refuses a line "
        "over twice the session's `read_bufsize` (64 KiB by default), and every legacy event "
        "carries the whole text so far. What to do: where the client lets you pass the session, "
        "`ClientSession(read_bufsize=...)` (measured in the `read_bufsize` row); else its sync "
        "path, or a shorter `max_tokens_to_sample`",
    ),
    (
        "LineTooLong",
        "cause: aiohttp's line reader caps one line; every legacy event carries the whole text "
        "so far. What to do: the sync client, or shorter `max_tokens_to_sample`",
    ),
)


def cause_of(error: str) -> str:
    return next((text for needle, text in CAUSES if needle in error), "")


def render(rows: list[Row], meta: dict[str, str]) -> str:
    lines = [
        BEGIN,
        f"Last run: {meta['date']}, `{meta['command']}` on branch `{meta['branch']}` "
        f"(commit {meta['commit']}), {meta['duration']}. Proxy: `python -m proxy` on its defaults"
        " (only `upstream_url` and its two ports set); upstream: `python -m proxy.simulator` on "
        f"its defaults with `--ping-every {PING_EVERY}`, and for the failure column "
        f"`--fault error-after:{FAIL_AFTER}`. Streamed and non-streamed: {SHORT} tokens, the "
        "whole text checked; long streams: "
        + ", ".join(f"{n:,}" for n in LADDER)
        + " tokens, bisected where a client raises. Model name sent: `claude-2.1`.",
        "",
        f"The proxies' peak memory (VmHWM) in this run: {meta['memory']}.",
        "",
        "| client | versions | streamed | non-streamed | failure surfaced | setting needed "
        "| known client-side limits |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: dict[str, int] = {}
    for r in rows:
        setting = "; ".join(s for s in (r.setting, r.client.base_url_note) if s) or "none"
        parts = []
        for measured, cause in r.limits:
            if cause:
                measured += f" (note {notes.setdefault(cause, len(notes) + 1)})"
            parts.append(measured)
        lines.append(
            f"| {r.client.name} | {r.client.versions} | {r.streamed} | {r.nonstreamed} "
            f"| {r.failure} | {setting} | {'; '.join(parts) or 'none found'} |"
        )
    if notes:
        lines += ["", "Causes, and what a user can do:", ""]
        for cause, n in notes.items():
            lines.append(f"{n}. {cause.removeprefix('cause: ')}")
    lines += ["", END]
    return "\n".join(lines)


def write_readme(path: Path, block: str) -> None:
    text = path.read_text()
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        raise SystemExit(f"compat: {path} has no {BEGIN} ... {END} markers")
    path.write_text(text)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def largest_response_mb(log: Path) -> float:
    """The most bytes the proxy sent in one response, from its request.done lines."""
    most = 0
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            most = max(most, int(json.loads(line).get("bytes_out") or 0))
    return most / 1e6


@contextlib.contextmanager
def running(
    logdir: Path, proxy_env: dict[str, str], memory: dict[str, float]
) -> Iterator[dict[str, Stack]]:
    procs = Processes(logdir, proxy_env)
    try:
        sim = procs.simulator("sim")
        sim_fail = procs.simulator("sim-fail", f"error-after:{FAIL_AFTER}")
        stacks = {
            "default": Stack(
                procs.proxy("proxy", sim), procs.proxy("proxy-fail", sim_fail), sim_fail
            ),
            "pings=drop": Stack(
                procs.proxy("proxy-pings-drop", sim, legacy_pings="drop"),
                procs.proxy("proxy-pings-drop-fail", sim_fail, legacy_pings="drop"),
                sim_fail,
            ),
        }
        yield stacks
    finally:
        memory.update(procs.peak_rss_mb())
        procs.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", type=Path, help="README to write the table into")
    ap.add_argument("--only", nargs="*", default=[], help="client keys (prefixes) to run")
    ap.add_argument("--proxy-env", action="append", default=[], metavar="KEY=VALUE",
                    help="a proxy setting for every proxy, as LEGACY_PROXY_<KEY>")  # fmt: skip
    ap.add_argument("--command", default="make compat", help="the command shown in the table")
    args = ap.parse_args()
    proxy_env = dict(kv.split("=", 1) for kv in args.proxy_env)
    chosen = [c for c in clients() if not args.only or c.key.startswith(tuple(args.only))]
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix="compat-"))
    print(f"compat: logs of the simulator and proxy processes in {logdir}", flush=True)
    rows = []
    memory: dict[str, float] = {}
    with running(logdir, proxy_env, memory) as stacks:
        for c in chosen:
            print(f"{c.key}:", flush=True)
            rows.append(check_client(c, stacks, lambda s: print(s, flush=True)))
    seconds = time.monotonic() - started
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": args.command
        + "".join(f" --proxy-env {shlex.quote(kv)}" for kv in args.proxy_env),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "commit": git("rev-parse", "--short", "HEAD")
        + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else ""),
        "duration": f"{seconds / 60:.1f} min",
        "memory": ", ".join(
            f"`{name}` {mb:,.0f} MB (largest response "
            f"{largest_response_mb(logdir / f'{name}.log'):,.0f} MB)"
            for name, mb in memory.items()
        ),
    }
    block = render(rows, meta)
    print(block)
    if args.write:
        write_readme(args.write, block)
        print(f"compat: table written into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
