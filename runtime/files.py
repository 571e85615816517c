"""Writing a file whole or not at all (copied into generated modules, tested here).

One helper for every file nnc writes: generated modules, DOT text and rendered pictures,
predictions, weights (`nnc train --out`, and `save_params` in generated modules). It imports
nothing at the top, so that `nnc compile` stays free of NumPy.
"""


def _replace_file(path, write):
    """Call `write(tmp)` to write a temporary file beside `path`, then rename it over `path`:
    a reader sees the old file or the new one, never a half-written one, and a failed or
    interrupted write leaves no temporary file behind.

    A symbolic link is written through (the file it names is replaced; the link stays). What
    exists and is no regular file (/dev/stdout, /dev/null, a named pipe) is written as it is:
    a rename would put a regular file in its place. A replaced file keeps its permission bits;
    a new one gets 0o644, as open() would give it under the usual umask (mkstemp's are 0o600).
    """
    import os
    import tempfile

    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):  # follows links
        write(path)
        return
    given, path = path, os.path.realpath(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=os.path.dirname(path))
        os.close(fd)
        write(tmp)
        os.chmod(tmp, os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None or exc.filename == given:
            raise
        # name the path the caller gave, not the temporary file (or its folder, for mkstemp)
        raise type(exc)(exc.errno, exc.strerror, given) from None
    finally:
        if tmp is not None and os.path.exists(tmp):  # write or the rename failed
            os.unlink(tmp)


def write_atomically(path, text: str | bytes) -> None:
    """Write `text` to `path` through _replace_file: bytes as they are, a str as UTF-8 with
    '\\n' line ends on every platform (generated code is the same file everywhere)."""
    binary = isinstance(text, bytes)

    def write(target):
        if binary:
            with open(target, "wb") as f:
                f.write(text)
        else:
            with open(target, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)

    _replace_file(path, write)
