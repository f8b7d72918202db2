"""Reproducibility signature carried by every JSON document.

What produced a number: the lossctl, NumPy, pyarrow and Python versions, each loss with its resolved
parameters, the reduction, the bootstrap seed (when one was used), and for each input its path, row count
and the SHA-256 of its bytes (for a directory or glob: of each file read).  Never secrets: URLs lose
their user:password@ part and their query string (which is where presigned tokens live), and nothing
from the environment is recorded.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

_CACHE: dict[tuple, str] = {}
_PREFETCH: list = []  # threads hashing inputs while the run reads them (see prefetch)


def prefetch(paths: Iterable[str]) -> None:
    """Start hashing the local files of these inputs in a background thread, while the run reads them:
    hashlib releases the GIL, so the hash overlaps the parse instead of following it (10M rows, `eval -f
    json`: the 392 MB CSV's hash was ~250 ms after the run).  Best effort: a file that cannot be read is
    left for sha256_file to report, and a file changed since is hashed again there (its cache key)."""
    import threading
    files: list[str] = []
    for p in paths:
        try:
            files += _files_of(str(p)) or []
        except OSError:
            continue
    if not files:
        return

    def work() -> None:
        for f in files:
            try:
                sha256_file(f)
            except OSError:
                pass
    t = threading.Thread(target=work, name="lossctl-sha256", daemon=True)
    _PREFETCH.append(t)
    t.start()


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (cached per path, size and mtime within one process)."""
    import threading
    me = threading.current_thread()
    for t in [t for t in _PREFETCH if t is not me]:  # a prefetch in flight: its result, not a second read
        t.join()
        _PREFETCH.remove(t)
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    _CACHE[key] = h.hexdigest()
    return _CACHE[key]


def safe_path(path: str) -> str:
    """The path with any credentials removed (user:password@host, ?query, #fragment of URLs)."""
    if "://" not in path:
        return path
    parts = urlsplit(path)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _files_of(path: str) -> list[str] | None:
    """The data files an input path names, as lossctl.io.sources reads them; None if not local."""
    if path in ("-", "<stdin>") or ("://" in path and not path.startswith("file://")):
        return None
    if path.startswith("file://"):
        path = path[len("file://"):]
    from .io import sources
    if os.path.isdir(path):
        return sorted(os.path.join(root, f) for root, _, fs in os.walk(path) for f in fs
                      if not f.startswith((".", "_")) and sources._split_ext(f)[0] in sources._EXT)
    if sources._is_glob(path):
        import glob
        return sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
    if sources._is_stream(path):
        return None
    return [path] if os.path.isfile(path) else []


def input_entry(inp: dict) -> dict:
    path = str(inp.get("path", ""))
    d: dict[str, Any] = {"path": safe_path(path), "rows": inp.get("rows")}
    if inp.get("role"):
        d["role"] = inp["role"]
    files = _files_of(path)
    if files is None:
        d["sha256"] = None
        d["note"] = ("standard input: bytes not kept" if path in ("-", "<stdin>") else
                     "remote input: not hashed" if "://" in path and not path.startswith("file://") else
                     "pipe: bytes not kept")
    elif len(files) == 1 and os.path.normpath(files[0]) == os.path.normpath(path):
        d["sha256"] = sha256_file(files[0])
    else:
        d["files"] = [{"path": f, "sha256": sha256_file(f)} for f in files]
    return d


def versions() -> dict:
    import numpy
    import pyarrow

    from . import __version__
    return {"lossctl": __version__, "numpy": numpy.__version__, "pyarrow": pyarrow.__version__,
            "python": platform.python_version(), "implementation": sys.implementation.name}


def build(*results, seed: int | list[int] | None = None) -> dict:
    """The signature of one or more :class:`lossctl.api.Result` (inputs are listed once each).

    ``seed``: the bootstrap seed (a list when several were used); by default the one the results record.
    """
    from .api import _jsonable_params
    sig: dict[str, Any] = versions()
    losses: list[dict] = []
    inputs: list[dict] = []
    seen_inputs: set = set()
    seen_losses: set = set()
    reductions: list[str] = []
    for res in results:
        if res.reduction not in reductions:
            reductions.append(res.reduction)
        for r in res.results:
            if r.group is None and r.label not in seen_losses:
                seen_losses.add(r.label)
                losses.append({"loss": r.loss, "label": r.label, "params": _jsonable_params(r.params)})
        for inp in res.inputs:
            key = (inp.get("path"), inp.get("rows"))
            if key not in seen_inputs:
                seen_inputs.add(key)
                inputs.append(input_entry(inp))
        if seed is None:
            seed = (res.extra.get("bootstrap") or {}).get("seed")
    sig["losses"] = losses
    sig["reduction"] = reductions[0] if len(reductions) == 1 else reductions
    sig["seed"] = seed
    sig["inputs"] = inputs
    return sig


def build_many(results: Iterable) -> dict:
    return build(*list(results))
