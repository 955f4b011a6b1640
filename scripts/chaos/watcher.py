"""Death watcher of the chaos suite: logs the moment each command process ends.

    python3 watcher.py --socket PATH --log EXEC_LOG

Every process of job.py connects to PATH and sends one line,
`role job attempt pid parent key path ms`, then keeps the connection open
without writing. When the process ends, however it ends (SIGKILL included),
the kernel closes its end and we append

    X role job attempt pid parent mono_ns real_ns key path ms

to EXEC_LOG (same format as job.py's lines, one write() each, O_APPEND).
The moment is when we saw the close: never before the death, a few ms after
it at most on a loaded machine. SIGTERM/SIGINT stop the watcher.
"""

import argparse
import asyncio
import os
import signal
import time


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    fd = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def handle(reader, writer):
        fields = []
        try:
            line = await reader.readline()
            fields = line.decode(errors="replace").split()
            if len(fields) == 8:
                while await reader.read(4096):
                    pass
        except (ConnectionError, OSError):
            pass
        mono, real = time.monotonic_ns(), time.time_ns()
        writer.close()
        if len(fields) != 8:
            return
        role, job, att, pid, parent, key, path, ms = fields
        os.write(fd, ("X %s %s %s %s %s %d %d %s %s %s\n" % (
            role, job, att, pid, parent, mono, real, key, path, ms)).encode())

    if os.path.exists(a.socket):
        os.unlink(a.socket)
    server = await asyncio.start_unix_server(handle, path=a.socket, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
