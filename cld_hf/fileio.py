"""Atomic file writes: the one way cld-hf writes a file that someone may read while it is written.

A file is written under a temporary name unique to the writer (host, process, random part), in
the same directory, flushed and ``fsync``-ed, then renamed over the target with ``os.replace``
(atomic on POSIX and Windows), and the directory is ``fsync``-ed so the rename survives a power
loss. A reader therefore sees the old file or the new one, never half of one; a crash leaves at
most a temporary file that :func:`is_abandoned_temp` can prove abandoned (its writer's process is
gone), and nothing else.

The one fsync policy: every file written here is durable when the call returns.

Examples
--------
>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> path = atomic_write_json(os.path.join(d, "state.json"), {"snapshots": 3})
>>> read_json(path)
{'snapshots': 3}
>>> os.listdir(d)
['state.json']
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_arrow",
    "arrow_file_bytes",
    "read_json",
    "temp_name",
    "is_temp_file",
    "is_abandoned_temp",
    "fsync_directory",
]

_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.cld-hf-(?P<host>[^.]*)-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40]


def temp_name(target: str) -> str:
    """The temporary file name a writer in this process uses for ``target`` (unique per call).

    Examples
    --------
    >>> name = temp_name("snapshot-00003.arrow")
    >>> name.startswith(".snapshot-00003.arrow.cld-hf-"), name.endswith(".tmp")
    (True, True)
    """
    return f".{target}.cld-hf-{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is a temporary file that :func:`atomic_write` makes.

    A user's own ``notes.tmp`` is not one.

    Examples
    --------
    >>> is_temp_file(temp_name("store.json")), is_temp_file("notes.tmp")
    (True, False)
    """
    return _TEMP_RE.match(name) is not None


def is_abandoned_temp(name: str) -> bool:
    """Whether the temporary file ``name`` was provably abandoned: its writer ran on this host
    and its process no longer exists. A temporary file of a live writer, of another host, or
    that is not one of ours is never called abandoned.

    Examples
    --------
    >>> is_abandoned_temp(temp_name("store.json"))  # this process is alive
    False
    >>> is_abandoned_temp("notes.tmp")
    False
    """
    m = _TEMP_RE.match(name)
    if m is None or m.group("host") != _host():
        return False
    pid = int(m.group("pid"))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the process exists (another user's)
        return False
    return False


def fsync_directory(directory) -> None:
    """``fsync`` a directory so that a rename inside it is durable (a no-op where unsupported).

    Examples
    --------
    >>> import tempfile
    >>> fsync_directory(tempfile.mkdtemp())
    """
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """Write ``path`` atomically: ``write(tmp_path)`` writes the content to a temporary file,
    which is fsync-ed and renamed over ``path``. On any error the temporary file is removed and
    ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The target; its directory must exist.
    write : callable
        ``write(tmp_path: str)`` creates the file ``tmp_path`` with the content.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> atomic_write(p, lambda tmp: open(tmp, "w").write("hello")).read_text()
    'hello'
    """
    path = Path(path)
    tmp = path.with_name(temp_name(path.name))
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Examples
    --------
    >>> import os, tempfile
    >>> atomic_write_bytes(os.path.join(tempfile.mkdtemp(), "b.bin"), b"\\x00\\x01").read_bytes()
    b'\\x00\\x01'
    """

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def atomic_write_json(path, obj, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, a trailing newline, no NaN) to ``path`` atomically.

    Examples
    --------
    >>> import os, tempfile
    >>> atomic_write_json(os.path.join(tempfile.mkdtemp(), "c.json"), [1, 2]).read_text()
    '[\\n  1,\\n  2\\n]\\n'
    """
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path):
    """Read a JSON file; a file that is not JSON is an error naming it.

    Examples
    --------
    >>> import os, tempfile
    >>> read_json(atomic_write_json(os.path.join(tempfile.mkdtemp(), "d.json"), {"a": 1}))
    {'a': 1}
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): the file is damaged.") from None


def atomic_write_arrow(path, table) -> Path:
    """Write a ``pyarrow.Table`` to ``path`` as an Arrow IPC file, atomically.

    Examples
    --------
    >>> import os, tempfile
    >>> import pyarrow as pa
    >>> p = atomic_write_arrow(os.path.join(tempfile.mkdtemp(), "t.arrow"), pa.table({"x": [1]}))
    >>> p.name
    't.arrow'
    """
    import pyarrow as pa
    import pyarrow.ipc as ipc

    def write(tmp: str) -> None:
        with pa.OSFile(tmp, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    return atomic_write(path, write)


def arrow_file_bytes(table):
    """The bytes of ``table`` as an Arrow IPC file (what :func:`atomic_write_arrow` writes).

    Examples
    --------
    >>> import pyarrow as pa
    >>> bytes(arrow_file_bytes(pa.table({"x": [1]})))[:6]
    b'ARROW1'
    """
    import pyarrow as pa
    import pyarrow.ipc as ipc

    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()
