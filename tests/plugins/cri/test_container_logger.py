"""The CRI log format: full lines, partial lines over max_container_log_line_size, \\r\\n,
output ending without a newline, timestamps in RFC3339Nano."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from pycontainerd.plugins.cri.io.logger import LineWriter, LogFile, timestamp


def _records(path: Path) -> list[tuple[str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        ts, stream, tag, content = (line.split(" ", 3) + [""])[:4]
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", ts), ts
        out.append((stream, tag, content))
    return out


def test_lines_partials_and_crlf(tmp_path: Path) -> None:
    f = LogFile(str(tmp_path / "sub" / "c.log")).open()
    w = LineWriter("stdout", f, max_line=4)
    w.feed(b"ab\r\ncdefghij\nkl")
    w.feed(b"m\nxyz")
    w.close()
    f.close()
    assert _records(tmp_path / "sub" / "c.log") == [
        ("stdout", "F", "ab"),
        ("stdout", "P", "cdef"),
        ("stdout", "F", "ghij"),
        ("stdout", "F", "klm"),
        ("stdout", "P", "xyz"),
    ]


def test_unlimited_line_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    f = LogFile(str(path)).open()
    w = LineWriter("stderr", f, max_line=-1)
    w.feed(b"y" * 100000 + b"\n")
    path.rename(tmp_path / "c.log.1")
    f.reopen()
    w.feed(b"after\n")
    f.close()
    assert _records(tmp_path / "c.log.1") == [("stderr", "F", "y" * 100000)]
    assert _records(path) == [("stderr", "F", "after")]


def test_timestamp_is_rfc3339nano() -> None:
    utc = datetime.datetime(2024, 5, 1, 10, 2, 3, 120000, tzinfo=datetime.UTC)
    assert timestamp(utc) == "2024-05-01T10:02:03.12Z"
    plus = utc.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert timestamp(plus.replace(microsecond=0)) == "2024-05-01T12:02:03+02:00"
