"""Soak (issue 9): 500 concurrent legacy streams paced at 100 ms for 60 seconds, with the simulator,
the proxy and the clients in separate processes. Memory must plateau, no file descriptor may
leak, and every stream's final text must be complete."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.e2e.test_process import ROOT, free_port, start_proxy, stop

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
async def test_soak_500_streams_for_a_minute() -> None:
    sim_port = free_port()
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.simulator", "--port", str(sim_port), "--text-completions",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    # the path real users run: every legacy /v1/complete through /v1/messages
    p = await start_proxy(
        f"http://127.0.0.1:{sim_port}", log_level="warning", complete_upstream="messages"
    )
    try:
        await asyncio.sleep(0.5)
        idle_fds, idle_rss = fds(p.proc.pid), rss_kb(p.proc.pid)
        client = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("soak_client.py")), p.url + "/v1/complete",
            "--workers", "500", "--seconds", str(SECONDS), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        samples = []
        while client.returncode is None:
            try:
                await asyncio.wait_for(client.wait(), 5)
            except TimeoutError:
                samples.append(rss_kb(p.proc.pid))
        assert client.stdout is not None
        stats = json.loads((await client.stdout.read()).decode().strip().splitlines()[-1])
        # idle pooled upstream connections close after aiohttp's 15 s keep-alive; a leaked socket
        # would stay open for ever
        for _ in range(25):
            after_fds, after_rss = fds(p.proc.pid), rss_kb(p.proc.pid)
            if after_fds <= idle_fds + 5:
                break
            await asyncio.sleep(1.0)
    finally:
        assert await stop(p) == 0
        sim.terminate()
        await sim.wait()
    print(f"soak: {stats}; RSS idle {idle_rss} kB, samples {samples} kB, after {after_rss} kB; "
          f"fds idle {idle_fds}, after {after_fds}")  # fmt: skip
    assert stats["incomplete"] == 0 and stats["errors"] == 0, stats
    assert stats["complete"] >= 500 * int(SECONDS / 5) * 0.8  # ~4 s streams, back to back
    # memory plateaus: the second half never grows past the first half's peak by more than 10 %
    half = len(samples) // 2
    assert max(samples[half:]) <= max(samples[:half]) * 1.10 + 2048, samples
    assert after_fds <= idle_fds + 5, (idle_fds, after_fds)
