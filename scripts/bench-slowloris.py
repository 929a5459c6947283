#!/usr/bin/env python3
"""Slowloris against a running `wharf serve`, with /healthz measured meanwhile
(docs/benchmarks.md, "Connections under a slowloris attack").

The attacker keeps ATTACKERS connections open, each sending a request head
one header line a second and never finishing it; a connection the server
cuts is opened again at once. Meanwhile /healthz is asked over 4 kept-alive
connections (opened before the attack) and over fresh connections, one at a
time; the server's RSS is read from /proc. Loopback only.

    scripts/bench-slowloris.py --port 8080 --pid $(pidof wharf) --attackers 3500
"""

import argparse
import asyncio
import re
import socket
import threading
import time
import urllib.request

HOST = "127.0.0.1"


def rss(pid):
    status = open(f"/proc/{pid}/status").read()
    kib = lambda key: int(re.search(key + r":\s+(\d+)", status).group(1))
    return f"RSS {kib('VmRSS') // 1024} MiB (peak {kib('VmHWM') // 1024} MiB)"


class Attack:
    def __init__(self, port, n):
        self.port, self.n = port, n
        self.open = self.opened = self.cut = self.refused = 0
        self.loop = asyncio.new_event_loop()
        self.stopped = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),))
        self.thread.start()

    async def one(self):
        while not self.stopped.is_set():
            try:
                r, w = await asyncio.open_connection(HOST, self.port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            self.opened += 1
            self.open += 1
            try:
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                i = 0
                while not self.stopped.is_set():
                    try:
                        data = await asyncio.wait_for(r.read(1024), 1.0)
                    except asyncio.TimeoutError:
                        w.write(f"X-Slow-{i}: a\r\n".encode())
                        i += 1
                        continue
                    if data.startswith(b"HTTP/1.1 503"):
                        self.refused += 1
                    else:
                        self.cut += 1
                    break
            except OSError:
                self.cut += 1
            finally:
                self.open -= 1
                w.close()

    async def run(self):
        self.stopped = asyncio.Event()
        tasks = []
        for i in range(self.n):
            tasks.append(asyncio.create_task(self.one()))
            if i % 200 == 199:
                await asyncio.sleep(0.05)
        await self.stopped.wait()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self):
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join()

    def __str__(self):
        return (f"held {self.open}, opened {self.opened}, cut {self.cut}, "
                f"answered 503 {self.refused}")


def keepalive_rate(socks, secs):
    """/healthz requests/s over already-open connections, one thread each."""
    counts, errors = [0] * len(socks), []

    def worker(k):
        s = socks[k]
        end = time.time() + secs
        try:
            while time.time() < end:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while not data.endswith(b"ok"):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed")
                    data += chunk
                counts[k] += 1
        except OSError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(socks))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return f"{sum(counts) / secs:.0f} req/s, errors {errors}"


def fresh_rate(port, secs):
    """/healthz requests/s on a new connection each, one at a time."""
    ok, other, latency = 0, {}, []
    end = time.time() + secs
    while time.time() < end:
        start = time.time()
        try:
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            s.close()
            status = data[9:12].decode() if data else "closed"
        except OSError as e:
            status = type(e).__name__
        if status == "200":
            ok += 1
            latency.append(time.time() - start)
        else:
            other[status] = other.get(status, 0) + 1
    latency.sort()
    pct = lambda q: latency[int(q * (len(latency) - 1))] * 1000 if latency else float("nan")
    return f"{ok / secs:.0f} req/s answered 200 (p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms), others {other}"


def closed_metrics(port):
    try:
        text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5).read().decode()
    except OSError as e:
        return f"(metrics unreachable: {e})"
    return ", ".join(l for l in text.splitlines() if l.startswith("wharf_connections_"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--attackers", type=int, default=3500)
    p.add_argument("--seconds", type=float, default=30)
    a = p.parse_args()
    socks = [socket.create_connection((HOST, a.port), timeout=5) for _ in range(4)]
    print("before:", rss(a.pid))
    print("before, kept-alive:", keepalive_rate(socks, 5))
    print("before, fresh connections:", fresh_rate(a.port, 5))
    attack = Attack(a.port, a.attackers)
    time.sleep(8)
    print(f"attack of {a.attackers}:", attack, "|", rss(a.pid))
    print("during, kept-alive (opened before):", keepalive_rate(socks, 5))
    print("during, fresh connections:", fresh_rate(a.port, 5))
    time.sleep(max(0, a.seconds - 18))
    print("end of the attack:", attack, "|", rss(a.pid))
    attack.stop()
    time.sleep(1)
    print("after:", rss(a.pid), "|", closed_metrics(a.port))


if __name__ == "__main__":
    main()
