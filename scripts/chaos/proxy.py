"""A TCP proxy the chaos suite puts between Redis and one worker.

    python3 proxy.py --upstream-port PORT --port-file FILE

Listens on 127.0.0.1 (a free port, written to FILE once listening) and
forwards every connection to 127.0.0.1:PORT, both ways.

    SIGUSR1  hang:   stop forwarding bytes in both directions; sockets stay
                     open, nothing is closed, new connections are accepted
                     but neither connected upstream nor forwarded
    SIGUSR2  resume: forward again (what was held goes through)
    SIGTERM          exit

When one side of a pair closes (Redis restarted, the worker went away), the
other side is closed too, so the worker sees its connection drop and
reconnects, as it would without the proxy. Each state change is printed to
stdout with the wall-clock time.
"""

import argparse
import os
import asyncio
import signal
import sys
import time


def say(msg):
    sys.stdout.write("%.3f proxy: %s\n" % (time.time(), msg))
    sys.stdout.flush()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()

    flowing = asyncio.Event()
    flowing.set()
    conns = {"open": 0, "total": 0}

    async def pump(reader, writer):
        try:
            while True:
                await flowing.wait()
                data = await reader.read(65536)
                if not data:
                    return
                # Bytes read just before a hang are held, not forwarded.
                await flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    async def handle(creader, cwriter):
        conns["open"] += 1
        conns["total"] += 1
        uwriter = None
        try:
            await flowing.wait()
            try:
                ureader, uwriter = await asyncio.open_connection(
                    "127.0.0.1", a.upstream_port)
            except OSError:
                return  # Redis is down: the worker sees a closed connection
            tasks = [asyncio.ensure_future(pump(creader, uwriter)),
                     asyncio.ensure_future(pump(ureader, cwriter))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                t.cancel()
        finally:
            conns["open"] -= 1
            for w in (cwriter, uwriter):
                if w is not None:
                    try:
                        w.close()
                    except Exception:
                        pass

    def hang():
        if flowing.is_set():
            flowing.clear()
            say("HUNG (%d connections open)" % conns["open"])

    def resume():
        if not flowing.is_set():
            flowing.set()
            say("RESUMED (%d connections open)" % conns["open"])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, hang)
    loop.add_signal_handler(signal.SIGUSR2, resume)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % port)

    os.replace(a.port_file + ".tmp", a.port_file)
    say("listening on 127.0.0.1:%d -> 127.0.0.1:%d" % (port, a.upstream_port))
    async with server:
        await stop.wait()
    say("exiting (%d connections seen)" % conns["total"])


if __name__ == "__main__":
    asyncio.run(main())
