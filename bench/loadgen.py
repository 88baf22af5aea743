"""Load for the serving benchmark: wrk at saturation, an open-loop asyncio client at fixed rates."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Saturation:
    """wrk's result: requests/s over the run, and how many answers were not 2xx."""

    requests_per_s: float
    requests: int
    non_2xx: int
    socket_errors: int


@dataclass(frozen=True)
class FixedRate:
    """Latency at a fixed offered rate, measured from each request's scheduled send time."""

    rate: float
    sent: int
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float
    achieved_per_s: float


def wrk_saturation(url: str, body: bytes, seconds: int = 10, connections: int = 32) -> Saturation:
    """POST `body` as fast as wrk can with `connections` keep-alive connections."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `apt-get install -y wrk` (make bench-serve does it)")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body").write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{tmp}/body", "rb"); wrk.body = f:read("*a"); f:close()\n'
        )
        proc = subprocess.run(
            # A 30 s timeout instead of wrk's 2 s: a slow server's answers must count, not vanish as errors.
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr.strip() or proc.stdout.strip()}")
    out = proc.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return Saturation(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in errors.groups()) if errors else 0,
    )


def _request(host: str, path: str, body: bytes | None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _fixed_rate(
    host: str, port: int, path: str, body: bytes | None, rate: float, seconds: float, connections: int
) -> FixedRate:
    request = _request(f"{host}:{port}", path, body)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    failed = 0
    n = int(rate * seconds)
    # Not loop.time(): uvloop's clock ticks in whole milliseconds and is read once per loop
    # iteration, which rounded every latency up to the next millisecond and then some.
    clock = time.perf_counter

    async def one(scheduled: float) -> None:
        nonlocal failed
        conn = await pool.get()
        try:
            conn[1].write(request)
            status = await _read_response(conn[0])
            if 200 <= status < 300:
                # From the scheduled time, not the send time: waiting for a free connection counts.
                latencies.append(clock() - scheduled)
            else:
                failed += 1
        except (OSError, asyncio.IncompleteReadError):
            failed += 1
            conn = await asyncio.open_connection(host, port)
        finally:
            pool.put_nowait(conn)

    tasks = []
    start = clock() + 0.05
    for i in range(n):
        at = start + i / rate
        delay = at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at)))
    await asyncio.gather(*tasks)
    elapsed = clock() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return FixedRate(
        rate, n, len(latencies), failed, pct(0.50), pct(0.99), n / elapsed if elapsed > 0 else 0.0
    )


def fixed_rate(
    host: str,
    port: int,
    path: str,
    body: bytes | None,
    rate: float,
    seconds: float = 5.0,
    connections: int = 64,
) -> FixedRate:
    """Offer `rate` POSTs of `body` (GETs when None) a second for `seconds`, open loop."""
    import uvloop  # ships with uvicorn[standard]; its loop keeps the client's own overhead low  # noqa: PLC0415  heavy: loads uvloop only when called

    return uvloop.run(_fixed_rate(host, port, path, body, rate, seconds, connections))


def wait_ready(
    url: str, timeout_s: float, ok: tuple[int, ...] = (200,), proc: subprocess.Popen[bytes] | None = None
) -> float:
    """Poll `url` until it answers one of `ok`; returns the seconds it took; raises on timeout or exit."""

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"the server behind {url} exited with code {proc.returncode} before it was ready"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - a local URL we built
                if resp.status in ok:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {ok} within {timeout_s:.0f} s")
