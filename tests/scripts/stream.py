"""Deterministic bulk and many-connection traffic for the mesh tests, as an unmodified app.

serve PORT BYTES        send BYTES of a seeded pseudo-random stream to each client; print its sha256
fetch HOST PORT         read until EOF; print byte count and sha256
echo PORT               echo server (one line per connection), for many concurrent connections
many HOST PORT N        open N connections at once, send a line on each, expect it back
chat PORT               echo server that echoes every line for as long as a connection lasts
hold HOST PORT          keep one connection chatting every 20 ms; print when and how it ends
once HOST PORT          one line there and back: print "ok", or "refused" and why
flood HOST PORT N S     open N connections at once without using them; print how many are
                        held and how many were reset, keep them S seconds
markers HOST PORT N     N connections one after another, each sending marker-I with a 1 s budget;
                        print the echo, "empty" or "failed: <error>" for each (one interpreter, so the
                        budget is the network's, not Python's start-up under load)
peer-server PORT        accept one connection, ask the pod's peer endpoint who it is, echo
peer-client HOST PORT   one line there and back, then ask the peer endpoint who answered
"""
import asyncio
import hashlib
import random
import socket
import sys

CHUNK = 1 << 20


def serve(port, total):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        rng = random.Random(42)
        digest = hashlib.sha256()
        left = total
        while left:
            block = rng.randbytes(min(CHUNK, left))
            digest.update(block)
            conn.sendall(block)
            left -= len(block)
        conn.close()
        print("sent", total, digest.hexdigest(), flush=True)


def fetch(host, port):
    conn = socket.create_connection((host, port))
    digest = hashlib.sha256()
    count = 0
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        digest.update(data)
        count += len(data)
    print("received", count, digest.hexdigest(), flush=True)


async def echo(port):
    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=2048)
    print("ready", flush=True)
    await server.serve_forever()


async def many(host, port, n):
    async def one(i):
        reader, writer = await asyncio.open_connection(host, port)
        return reader, writer, i

    conns = await asyncio.gather(*(one(i) for i in range(n)))
    print("open", len(conns), flush=True)
    await asyncio.sleep(float(sys.argv[5]) if len(sys.argv) > 5 else 0)
    ok = 0
    for reader, writer, i in conns:
        writer.write(f"conn-{i}\n".encode())
    for reader, writer, i in conns:
        line = await reader.readline()
        ok += line == f"conn-{i}\n".encode()
        writer.close()
    print("echoed", ok, flush=True)


async def chat(port):
    async def handle(reader, writer):
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=256)
    print("ready", flush=True)
    await server.serve_forever()


def hold(host, port):
    import time

    conn = socket.create_connection((host, port), timeout=5)
    conn.settimeout(5)
    n = 0
    reason = "eof"
    try:
        while True:
            conn.sendall(f"ping {n}\n".encode())
            data = conn.recv(4096)
            if not data:
                break
            if n == 0:
                print("open", flush=True)
            n += 1
            time.sleep(0.02)
    except OSError as e:
        reason = type(e).__name__
    print("closed", f"{time.time():.3f}", reason, "after", n, flush=True)


def once(host, port):
    try:
        conn = socket.create_connection((host, port), timeout=5)
        conn.settimeout(5)
        conn.sendall(b"hello\n")
        data = conn.recv(4096)
        print("ok" if data == b"hello\n" else f"refused eof {data!r}", flush=True)
    except OSError as e:
        print("refused", type(e).__name__, e, flush=True)


def ask_peer(conn):
    import urllib.error
    import urllib.request

    local = "%s:%d" % conn.getsockname()[:2]
    remote = "%s:%d" % conn.getpeername()[:2]
    url = f"http://127.0.0.1:15021/v1/peer?local={local}&remote={remote}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print("peer", response.read().decode(), flush=True)
    except urllib.error.HTTPError as e:
        print("peer-error", e.code, e.read().decode(), flush=True)


def peer_server(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4)
    print("ready", flush=True)
    conn, _ = srv.accept()
    line = conn.recv(4096)
    ask_peer(conn)
    conn.sendall(line)
    conn.close()


def peer_client(host, port):
    conn = socket.create_connection((host, port), timeout=5)
    conn.sendall(b"who\n")
    conn.recv(4096)
    ask_peer(conn)


def markers(host, port, count):
    import time

    for i in range(count):
        try:
            conn = socket.create_connection((host, port), timeout=1)
            conn.settimeout(1)
            conn.sendall(f"marker-{i}\n".encode())
            print(conn.recv(100).decode().strip() or "empty", flush=True)
            conn.close()
        except OSError as e:
            print(f"failed: {e!r}", flush=True)
        time.sleep(0.02)


def flood(host, port, n, seconds):
    import errno
    import resource
    import time

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)

    def state(s):
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return "reset"
        try:
            s.getpeername()
        except OSError:
            return "pending"
        try:
            return "closed" if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"" else "held"
        except BlockingIOError:
            return "held"
        except OSError as e:
            return "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "pending"

    # SO_ERROR is cleared once read: a socket found reset or closed keeps that state.
    # Established is not yet accepted: wait until the counts settle.
    final = {}
    previous = None
    deadline = time.time() + 60
    while True:
        counts = {}
        for i, s in enumerate(socks):
            k = final.get(i) or state(s)
            if k in ("reset", "closed"):
                final[i] = k
            counts[k] = counts.get(k, 0) + 1
        if (not counts.get("pending") and counts == previous) or time.time() > deadline:
            break
        previous = counts
        time.sleep(2)
    print("flood", " ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
    time.sleep(seconds)
    print("done", flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "fetch":
        fetch(sys.argv[2], int(sys.argv[3]))
    elif cmd == "echo":
        asyncio.run(echo(int(sys.argv[2])))
    elif cmd == "chat":
        asyncio.run(chat(int(sys.argv[2])))
    elif cmd == "hold":
        hold(sys.argv[2], int(sys.argv[3]))
    elif cmd == "peer-server":
        peer_server(int(sys.argv[2]))
    elif cmd == "peer-client":
        peer_client(sys.argv[2], int(sys.argv[3]))
    elif cmd == "flood":
        flood(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "once":
        once(sys.argv[2], int(sys.argv[3]))
    elif cmd == "markers":
        markers(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "many":
        asyncio.run(many(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
