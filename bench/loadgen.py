"""Fast QoS 1 MQTT load generator for the ingest benchmarks.

Speaks MQTT 3.1.1 on raw sockets: one CONNECT, then pre-encoded PUBLISH
packets written in large chunks with a window of packets awaiting PUBACK (read
back and checked). A paho publisher tops out at roughly 10k msgs/s here; this
one is limited by the broker. Several processes can share the work: each owns
a disjoint set of devices, so every device's ``seq`` rises by one per reading
in publish order.

Readings are CONTRACT §2 single readings of ``flood_gauge`` devices::

    {prefix}/d{NN}/flood_gauge/dev-{NNNNNN}/telemetry
    {"ts": <now ms>, "seq": <n>, "metrics": {"water_level_m": 1.23, "battery_v": 3.71}}

    python3 bench/loadgen.py --url mqtt://127.0.0.1:PORT --total 200000 --devices 10000
    python3 bench/loadgen.py --url ... --rate 15000      # paced instead of flat out

Importable: :func:`publish_readings` (blocking) and :func:`publish_readings_async`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import queue
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

#: Packets sent but not yet acknowledged, per connection.
WINDOW = 4000
#: Packets encoded and written per sendall.
CHUNK = 500
ASSET_TYPE = "flood_gauge"


def device_topics(prefix: str, devices: int, districts: int) -> list[str]:
    """The telemetry topic of every device; device i lives in district i % districts."""
    return [
        f"{prefix}/d{(i % districts) + 1:02d}/{ASSET_TYPE}/dev-{i:06d}/telemetry"
        for i in range(devices)
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session: the generator keeps no state between runs
    payload = struct.pack("!H", len(client_id)) + client_id.encode()
    if username is not None:
        flags |= 0x80
        payload += struct.pack("!H", len(username)) + username.encode()
        if password is not None:
            flags |= 0x40
            payload += struct.pack("!H", len(password)) + password.encode()
    # keepalive 0: no PINGREQ needed however long a paced run takes.
    variable = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x00"
    body = variable + payload
    return b"\x10" + _varint(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def _connect(url: str, client_id: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sock.sendall(_connect_packet(client_id, parts.username, parts.password))
    connack = _recv_exact(sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"broker refused the connection: CONNACK {connack.hex()}")
    # Blocking mode (no timeout): MSG_DONTWAIT polls then raise BlockingIOError at once.
    sock.settimeout(None)
    return sock


def _worker(
    url: str,
    topics: list[str],
    total: int,
    rate: float | None,
    start: Any,
    results: Any,
    index: int,
) -> None:
    """Publish ``total`` readings round-robin over ``topics``; report figures."""
    sock = _connect(url, f"loadgen-{os.getpid()}-{index}")
    heads = [struct.pack("!H", len(t)) + t.encode() for t in topics]
    seqs = [0] * len(topics)
    n_topics = len(topics)
    start.wait()
    t0 = time.monotonic()
    sent = acked = 0
    pending = b""
    mid = 0
    while acked < total:
        window = WINDOW - (sent - acked)
        allowed = min(CHUNK, window, total - sent)
        if rate is not None and allowed > 0:
            due = int((time.monotonic() - t0) * rate) + 1 - sent
            allowed = min(allowed, max(due, 0))
        if allowed > 0:
            ts = time.time_ns() // 1_000_000
            packets = []
            for k in range(sent, sent + allowed):
                d = k % n_topics
                seq = seqs[d]
                seqs[d] = seq + 1
                mid = mid % 65535 + 1
                payload = (
                    b'{"ts":%d,"seq":%d,"metrics":{"water_level_m":%d.%02d,"battery_v":3.%02d}}'
                    % (ts, seq, (seq // 100) % 5, seq % 100, 50 + seq % 40)
                )
                head = heads[d]
                packets.append(b"\x32")
                packets.append(_varint(len(head) + 2 + len(payload)))
                packets.append(head)
                packets.append(struct.pack("!H", mid))
                packets.append(payload)
            sock.sendall(b"".join(packets))
            sent += allowed
        # Block for acks when the window is full or everything is out; else just poll.
        blocking = sent - acked >= WINDOW or sent == total
        if rate is not None and not blocking and allowed == 0:
            time.sleep(min(0.002, 1 / rate))
        try:
            data = sock.recv(1 << 16) if blocking else sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        if not data:
            raise ConnectionError("broker closed the connection")
        data = pending + data
        whole = len(data) // 4 * 4
        if data[0:whole:4].count(0x40) != whole // 4:
            raise ConnectionError("unexpected packet from the broker (expected PUBACKs)")
        acked += whole // 4
        pending = data[whole:]
    t1 = time.monotonic()
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    results.put({"index": index, "sent": sent, "acked": acked, "t0": t0, "t1": t1})


def publish_readings(
    url: str,
    prefix: str,
    devices: int,
    districts: int,
    total: int,
    rate: float | None = None,
    processes: int = 2,
) -> dict[str, float]:
    """Publish ``total`` QoS 1 readings from ``devices`` devices; return the figures.

    Figures: ``sent``, ``acked`` (PUBACKs received), ``seconds`` (first publish to
    last PUBACK, all processes), ``rate`` (acked per second), ``processes``.
    ``rate`` paces the whole run at that many readings per second (None: flat out).
    """
    processes = max(1, min(processes, devices, total))
    topics = device_topics(prefix, devices, districts)
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    workers = []
    for p in range(processes):
        share = total // processes + (1 if p < total % processes else 0)
        mine = topics[p::processes]
        per_rate = rate / processes if rate else None
        workers.append(
            ctx.Process(
                target=_worker,
                args=(url, mine, share, per_rate, start, results, p),
                daemon=True,
            )
        )
    for w in workers:
        w.start()
    # Workers connect, then wait; all start together so the timing is fair.
    time.sleep(0.05)
    start.set()
    figures: list[dict[str, Any]] = []
    while len(figures) < len(workers):
        try:
            figures.append(results.get(timeout=1))
        except queue.Empty:
            dead = [w for w in workers if not w.is_alive() and w.exitcode != 0]
            if dead:
                for w in workers:
                    w.terminate()
                raise RuntimeError(f"{len(dead)} load generator process(es) failed") from None
    for w in workers:
        w.join(10)
    t0 = min(f["t0"] for f in figures)
    t1 = max(f["t1"] for f in figures)
    acked = sum(f["acked"] for f in figures)
    seconds = max(t1 - t0, 1e-9)
    return {
        "sent": float(sum(f["sent"] for f in figures)),
        "acked": float(acked),
        "seconds": seconds,
        "rate": acked / seconds,
        "processes": float(processes),
    }


async def publish_readings_async(
    url: str,
    prefix: str,
    devices: int,
    districts: int,
    total: int,
    rate: float | None = None,
    processes: int = 2,
) -> dict[str, float]:
    """:func:`publish_readings` without blocking the event loop."""
    return await asyncio.to_thread(
        publish_readings, url, prefix, devices, districts, total, rate, processes
    )


def main() -> None:
    """Command line: publish and print the rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="mqtt://host:port")
    parser.add_argument("--prefix", default="city")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--districts", type=int, default=8)
    parser.add_argument("--total", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=None, help="readings/s (default: max)")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    f = publish_readings(
        args.url, args.prefix, args.devices, args.districts, args.total, args.rate, args.processes
    )
    print(
        f"published {f['acked']:,.0f} QoS 1 readings in {f['seconds']:.2f} s: "
        f"{f['rate']:,.0f} msgs/s ({f['processes']:.0f} processes)"
    )


if __name__ == "__main__":
    main()
