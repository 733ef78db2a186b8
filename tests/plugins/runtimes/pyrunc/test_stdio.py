from __future__ import annotations

import asyncio
import os
import threading

from pycontainerd.plugins.runtimes.pyrunc.stdio import ProcessIO


def _read_all(fd: int, out: list[bytes]) -> None:
    while chunk := os.read(fd, 65536):
        out.append(chunk)
    os.close(fd)


async def test_close_io_passes_on_what_the_fifo_still_holds(tmp_path):
    """containerd's clients call CloseIO right after their last write: the process still
    gets every byte (more than the FIFO and pipe buffers hold), then EOF."""
    fifo = str(tmp_path / "stdin")
    os.mkfifo(fifo)
    pio = ProcessIO(stdin=fifo)
    stdio = pio.prepare()
    assert stdio.stdin is not None
    child_stdin = os.dup(stdio.stdin)  # the process's end of its stdin pipe
    await pio.started()
    got: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(child_stdin, got))
    reader.start()
    data = b"abc\n" + b"x" * 300_000 + b"\n"

    def write() -> None:
        w = os.open(fifo, os.O_WRONLY)
        view = memoryview(data)
        while view:
            view = view[os.write(w, view) :]
        os.close(w)

    await asyncio.to_thread(write)
    pio.close_stdin()
    await asyncio.wait_for(asyncio.to_thread(reader.join), 10)
    assert b"".join(got) == data
    pio.close_now()


async def test_close_io_ends_stdin_while_the_client_keeps_the_fifo_open(tmp_path):
    fifo = str(tmp_path / "stdin")
    os.mkfifo(fifo)
    pio = ProcessIO(stdin=fifo)
    stdio = pio.prepare()
    assert stdio.stdin is not None
    child_stdin = os.dup(stdio.stdin)
    await pio.started()
    w = os.open(fifo, os.O_WRONLY)
    try:
        os.write(w, b"hello")
        got: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(child_stdin, got))
        reader.start()
        await asyncio.sleep(0.05)
        pio.close_stdin()
        await asyncio.wait_for(asyncio.to_thread(reader.join), 10)
        assert b"".join(got) == b"hello"
    finally:
        os.close(w)
        pio.close_now()


async def test_close_now_closes_each_copied_fd_once(tmp_path):
    fifo = str(tmp_path / "stdin")
    os.mkfifo(fifo)
    pio = ProcessIO(stdin=fifo)
    pio.prepare()
    await pio.started()
    await asyncio.sleep(0.01)  # the stdin copy is running
    pio.close_now()
    # fds reused right after close_now must survive the cancelled copy task's cleanup
    reused = [os.open(os.devnull, os.O_RDONLY) for _ in range(4)]
    try:
        await asyncio.sleep(0.01)
        for fd in reused:
            os.fstat(fd)
    finally:
        for fd in reused:
            os.close(fd)
