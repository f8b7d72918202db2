"""Inputs in object storage: ``s3://`` through pyarrow's S3 filesystem, other fsspec URLs through fsspec.

A remote input becomes an ordinary :class:`~lossctl.io.sources.Source` whose ``fs`` is a
``pyarrow.fs.FileSystem`` and whose ``files`` are paths within it, so everything downstream (schemas,
columns, batches, the Dask engine) works the same as for local files.

* ``s3://bucket/key``, ``s3://bucket/prefix/``, ``'s3://bucket/run-*/*.parquet'``: ``pyarrow.fs.S3FileSystem``
  with the endpoint from ``--endpoint-url`` (else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``), the region
  from ``--region`` (else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1``: always passed, so the
  client never asks the network for a bucket's region) and credentials from the AWS SDK's standard chain
  (environment, ``AWS_PROFILE`` and the shared config files, web identity, container / instance metadata).
  Keys are only passed on when a Python caller gives them in ``storage_options`` (``key``, ``secret``,
  ``token``), or ``anonymous=True`` for public buckets.
* ``gs://``, ``gcs://``, ``az://``, ``abfs://``, ``http(s)://``, ``memory://`` and any other fsspec protocol:
  ``fsspec.filesystem(protocol, **storage_options)`` wrapped in ``pyarrow.fs.PyFileSystem(FSSpecHandler(fs))``
  (needs fsspec plus that protocol's package: gcsfs, adlfs, aiohttp for http).

A directory or prefix means the data files under it (names starting with ``.`` or ``_`` skipped, as for
local directories); a glob (``*``, ``?``, ``[``) is matched below its fixed prefix (``*`` stays within one
path segment, ``**`` crosses them).  The format comes from the extension, else from the magic bytes.

Secrets never leave this module in text: what is shown (``Source.path``, every error) is the URL without
user info, query string or fragment, and errors are classified into one line (cannot connect, no such
bucket, no such object, access denied) instead of echoing the storage client's message.
"""
from __future__ import annotations

import fnmatch
import os
import re
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputError, UsageError

DEFAULT_REGION = "us-east-1"
PYARROW_SCHEMES = ("s3", "s3a")
# storage_options keys that lossctl itself interprets (the rest go to fsspec as they are)
_OWN_OPTIONS = ("endpoint_url", "region")
_SECRET_OPTIONS = ("key", "secret", "token", "access_key", "secret_key", "session_token", "password",
                   "account_key", "sas_token", "client_secret", "credential", "credentials", "connection_string")


# -- showing URLs without secrets ----------------------------------------------------------------------
def redact_url(url: str) -> str:
    """``url`` without user info, query string or fragment (where tokens and signatures live).

    >>> redact_url("https://user:pw@host:8443/data/p.parquet?sig=abc#x")
    'https://host:8443/data/p.parquet'
    >>> redact_url("s3://bucket/preds/")
    's3://bucket/preds/'
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://<url>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _secrets(url: str, options: Mapping[str, Any]) -> list[str]:
    """Strings that must not appear in any message: option secrets, URL user info and query."""
    out = [str(v) for k, v in options.items() if k in _SECRET_OPTIONS and v]
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            out.append(os.environ[name])
    for u in (url, str(options.get("endpoint_url") or "")):
        if "://" in u:
            try:
                p = urlsplit(u)
            except ValueError:
                continue
            if "@" in p.netloc:
                out.append(p.netloc.rsplit("@", 1)[0])
            if p.query:
                out.append(p.query)
    return [s for s in out if len(s) >= 4]


def scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return re.sub(r"\s*\(Request ID: [^)]*\)", "", text)


# -- filesystems --------------------------------------------------------------------------------------
def _endpoint(options: Mapping[str, Any]) -> str | None:
    return (options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL") or None)


def s3_filesystem(options: Mapping[str, Any]):
    """A ``pyarrow.fs.S3FileSystem`` for ``storage_options`` (see the module docstring)."""
    from pyarrow import fs as pafs

    kw: dict[str, Any] = {"region": options.get("region") or os.environ.get("AWS_REGION")
                          or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION}
    endpoint = _endpoint(options)
    if endpoint:
        if "://" in endpoint:
            p = urlsplit(endpoint)
            if p.scheme not in ("http", "https") or not p.netloc:
                raise UsageError(f"--endpoint-url {redact_url(endpoint)}: expected http(s)://HOST[:PORT]")
            kw["scheme"] = p.scheme
            kw["endpoint_override"] = p.netloc.rsplit("@", 1)[-1] + p.path.rstrip("/")
        else:
            kw["endpoint_override"] = endpoint
    key = options.get("key") or options.get("access_key")
    secret = options.get("secret") or options.get("secret_key")
    if key or secret:
        if not (key and secret):
            raise UsageError("storage_options: give both key and secret (or neither, for the standard chain)")
        kw["access_key"], kw["secret_key"] = str(key), str(secret)
        token = options.get("token") or options.get("session_token")
        if token:
            kw["session_token"] = str(token)
    if options.get("anonymous"):
        kw["anonymous"] = True
    for name in ("connect_timeout", "request_timeout"):
        if options.get(name) is not None:
            kw[name] = float(options[name])
    return pafs.S3FileSystem(**kw)


def fsspec_filesystem(protocol: str, url: str, options: Mapping[str, Any]):
    """(pyarrow filesystem wrapping fsspec's implementation of ``protocol``, the fsspec filesystem)."""
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{redact_url(url)}: reading {protocol}:// URLs needs fsspec; "
                         f"pip install 'lossctl[remote]'") from None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    kw = {k: v for k, v in options.items() if k not in _OWN_OPTIONS and v is not None}
    try:
        fs = fsspec.filesystem(protocol, **kw)
    except ValueError as exc:  # unknown protocol
        raise UsageError(f"{redact_url(url)}: {protocol}:// is not a known storage protocol ({_first_line(exc)})") from None
    except ImportError as exc:  # fsspec knows it, its package is missing: "Install gcsfs to access ..."
        raise UsageError(f"{redact_url(url)}: {_first_line(exc)}") from None
    return PyFileSystem(FSSpecHandler(fs)), fs


def _alias_handler(fs, aliases: dict[str, str]):
    """An FSSpecHandler that knows some files by a second name: a URL without its user info or query
    (a token, a signature), so that the name lossctl shows and puts in errors holds no secret.  The real
    URL stays inside the handler (and travels with it when a Dask task is pickled)."""
    from pyarrow.fs import FSSpecHandler

    class AliasHandler(FSSpecHandler):
        def __init__(self, fs, aliases):
            super().__init__(fs)
            self.aliases = aliases

        def __reduce__(self):
            return _alias_handler, (self.fs, self.aliases)

        def _real(self, path):
            return self.aliases.get(path, path)

        def get_file_info(self, paths):
            infos = super().get_file_info([self._real(p) for p in paths])
            return [type(i)(p, i.type, size=i.size, mtime=i.mtime) for p, i in zip(paths, infos)]

        def open_input_stream(self, path):
            return super().open_input_stream(self._real(path))

        def open_input_file(self, path):
            return super().open_input_file(self._real(path))

    return AliasHandler(fs, aliases)


def filesystem_for(url: str, options: Mapping[str, Any] | None = None):
    """(pyarrow filesystem, path within it) for a remote URL."""
    options = dict(options or {})
    protocol = url.split("://", 1)[0].lower()
    if protocol in PYARROW_SCHEMES:
        return s3_filesystem(options), url.split("://", 1)[1]
    pafs_, fs = fsspec_filesystem(protocol, url, options)
    if protocol in ("http", "https"):
        shown = redact_url(url)
        if shown != url:
            from pyarrow.fs import PyFileSystem
            return PyFileSystem(_alias_handler(fs, {shown: url})), shown
        return pafs_, url
    return pafs_, fs._strip_protocol(url)


def file_display(src, path: str) -> str:
    """How a file of a remote source is shown: its URL without secrets (a local path as it is)."""
    fs = getattr(src, "fs", None)
    if fs is None:
        return path
    if type(fs).__name__ == "S3FileSystem":
        return "s3://" + path
    handler = getattr(fs, "handler", None)
    inner = getattr(handler, "fs", None)
    if inner is not None and "://" not in path:
        try:
            return redact_url(inner.unstrip_protocol(path))
        except Exception:  # pragma: no cover - exotic fsspec implementations
            pass
    return redact_url(path)


# -- errors --------------------------------------------------------------------------------------------
_CONNECT = ("NETWORK_CONNECTION", "could not connect", "couldn't connect", "connection refused",
            "failed to connect", "cannot connect to host", "name or service not known",
            "could not resolve host", "couldn't resolve host", "timed out", "timeout was reached",
            "temporary failure in name resolution", "connection reset")
_DENIED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403", "401", "EXPIRED_TOKEN", "ExpiredToken",
           "INVALID_CLIENT_TOKEN_ID", "UNRECOGNIZED_CLIENT", "MISSING_AUTHENTICATION_TOKEN",
           "No credentials", "Unable to locate credentials")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def describe_error(exc: BaseException, shown: str, endpoint: str | None, secrets: list[str]) -> str:
    """One line for a storage error on ``shown`` (a redacted URL): what went wrong and what to check."""
    texts = [f"{type(e).__name__}: {e}" for e in _chain(exc)]
    blob = " | ".join(texts)
    low = blob.lower()
    where = f" {redact_url(endpoint)}" if endpoint else ""
    if any(k.lower() in low for k in _CONNECT) or any(
            isinstance(e, (ConnectionError, TimeoutError)) for e in _chain(exc)):
        if endpoint is None and shown.startswith(("http://", "https://")):
            host = urlsplit(shown).netloc
            return f"{shown}: cannot connect to {host}; check the URL and the network"
        return (f"{shown}: cannot connect to the storage endpoint{where}; check --endpoint-url, the network "
                f"and that the service is running")
    if "NO_SUCH_BUCKET" in blob or "NoSuchBucket" in blob:
        m = re.search(r"bucket '([^']+)'", blob)
        b = f" {m.group(1)!r}" if m else ""
        return f"{shown}: bucket{b} does not exist; check the bucket name (and --endpoint-url / --region)"
    # (status codes are looked for outside URLs: port 40363 or a path /4031/ is no 403)
    bare = re.sub(r"\w[\w+.-]*://\S+", " ", blob).lower()
    if any(k.lower() in bare for k in _DENIED):
        code = next((k for k in _DENIED if k.lower() in bare), "denied")
        return (f"{shown}: access denied ({code}); check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID / "
                f"AWS_SECRET_ACCESS_KEY, or the cloud's login) and that they may read this object")
    if any(isinstance(e, FileNotFoundError) for e in _chain(exc)) or "NO_SUCH_KEY" in blob:
        return f"{shown}: no such object"
    return f"{shown}: cannot read: {scrub(_first_line(exc), secrets)}"


class _Guard:
    """Turns storage exceptions in a ``with`` block into one-line InputErrors about ``shown``."""

    def __init__(self, shown: str, endpoint: str | None, secrets: list[str]):
        self.shown, self.endpoint, self.secrets = shown, endpoint, secrets

    def __enter__(self):
        return self

    def __exit__(self, et, exc, tb):
        if exc is None or isinstance(exc, (InputError, UsageError)) or not isinstance(exc, Exception):
            return False
        raise InputError(describe_error(exc, self.shown, self.endpoint, self.secrets)) from None


# -- listing ---------------------------------------------------------------------------------------------
def _glob_regex(pattern: str) -> re.Pattern:
    """A glob over '/'-separated paths: ``*`` and ``?`` stay within a segment, ``**`` crosses segments."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape("["))
                i += 1
            else:
                out.append(fnmatch.translate(pattern[i:j + 1])[4:-3])  # '(?s:[...])\Z' -> '[...]'
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _data_file(path: str) -> bool:
    from .sources import _EXT, _split_ext
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return not base.startswith((".", "_")) and _split_ext(base)[0] in _EXT


def _bucket_exists(fs, path: str) -> bool | None:
    from pyarrow.fs import FileType
    bucket = path.split("/", 1)[0]
    try:
        return fs.get_file_info(bucket).type != FileType.NotFound
    except Exception:
        return None


def list_files(fs, root: str, shown: str, is_s3: bool, guard: _Guard) -> list[str]:
    """The data files a URL names: one object, the data files under a prefix, or the matches of a glob."""
    from pyarrow.fs import FileSelector, FileType

    with guard:
        if _is_glob(root) and not root.startswith(("http://", "https://")):
            first = min(root.index(c) for c in "*?[" if c in root)
            base = root[:first].rsplit("/", 1)[0] if "/" in root[:first] else ""
            rx = _glob_regex(root)
            infos = fs.get_file_info(FileSelector(base, recursive=True, allow_not_found=True))
            files = sorted(i.path for i in infos if i.type == FileType.File and rx.match(i.path))
            if not files:
                if is_s3 and _bucket_exists(fs, root) is False:
                    raise InputError(f"{shown}: bucket {root.split('/', 1)[0]!r} does not exist; check the bucket name")
                raise InputError(f"{shown}: no object matches this pattern")
            return files
        info = fs.get_file_info(root.rstrip("/") if root.endswith("/") and len(root) > 1 else root)
        if info.type == FileType.File and not root.endswith("/"):
            return [root]
        if info.type == FileType.Directory or root.endswith("/"):
            base = root.rstrip("/")
            infos = fs.get_file_info(FileSelector(base, recursive=True, allow_not_found=True))
            files = sorted(i.path for i in infos if i.type == FileType.File and _data_file(i.path))
            if files:
                return files
            if info.type == FileType.NotFound:
                if is_s3 and _bucket_exists(fs, root) is False:
                    raise InputError(f"{shown}: bucket {root.split('/', 1)[0]!r} does not exist; check the bucket name")
                raise InputError(f"{shown}: no such prefix (no objects under it)")
            raise InputError(f"{shown}: holds no readable data files (.parquet, .csv, ...)")
        if is_s3 and _bucket_exists(fs, root) is False:
            raise InputError(f"{shown}: bucket {root.split('/', 1)[0]!r} does not exist; check the bucket name")
        _probe_fsspec(fs, root, guard)
        raise InputError(f"{shown}: no such object")


def _probe_fsspec(fs, path: str, guard: _Guard) -> None:
    """pyarrow's FSSpecHandler reports any failure of fsspec's ``info`` as 'not found' (an unreachable
    http server included); ask fsspec directly to tell a connection failure from a missing object."""
    handler = getattr(fs, "handler", None)
    inner = getattr(handler, "fs", None)
    if inner is None:
        return
    real = handler._real(path) if hasattr(handler, "_real") else path
    with guard:
        inner.info(real)


# -- the entry point --------------------------------------------------------------------------------------
def open_remote_source(url: str, input_format: str | None = None,
                       storage_options: Mapping[str, Any] | None = None):
    """Resolve a URL into a :class:`~lossctl.io.sources.Source` reading through a pyarrow filesystem."""
    from .sources import FORMAT_ALIASES, FORMATS, _EXT, Source, _head_of, _sniff_bytes, _sniff_delimiter, _split_ext

    options = dict(storage_options or {})
    shown = redact_url(url)
    protocol = url.split("://", 1)[0].lower()
    is_s3 = protocol in PYARROW_SCHEMES
    endpoint = _endpoint(options) if is_s3 else None
    guard = _Guard(shown, endpoint, _secrets(url, options))
    fmt = None
    if input_format:
        key = input_format.lower()
        if key not in FORMAT_ALIASES:
            raise UsageError(f"unknown --input-format {input_format!r}; use one of {', '.join(FORMATS)}")
        fmt = FORMAT_ALIASES[key]
    with guard:
        fs, root = filesystem_for(url, options)
    if is_s3 and not root.split("/", 1)[0]:
        raise UsageError(f"{shown}: expected s3://BUCKET/KEY")
    files = list_files(fs, root, shown, is_s3, guard)

    def name(p: str) -> str:
        return redact_url(p) if "://" in p else p

    ext, comp = _split_ext(name(files[0]))
    if fmt is None:
        kinds = {_EXT.get(_split_ext(name(f))[0]) for f in files}
        if len(files) > 1 and len(kinds) > 1:
            raise InputError(f"{shown}: mixes file formats ({', '.join(sorted(k or '?' for k in kinds))}); "
                             f"point at one kind of file")
        fmt = _EXT.get(ext)
    first_shown = file_display(Source(path=shown, format="csv", files=files, fs=fs), files[0])
    with _Guard(first_shown, endpoint, guard.secrets):
        with fs.open_input_stream(files[0], compression=None) as fh:
            head = fh.read(8)
    if not head:
        raise InputError(f"{first_shown}: object is empty (no header, no rows)")
    sfmt, scomp = _sniff_bytes(head)
    comp = comp or scomp
    if fmt is None:
        fmt = sfmt or "csv"
    elif sfmt and sfmt != fmt and comp is None:
        raise InputError(f"{first_shown}: file extension says {fmt} but the content is {sfmt}; "
                         f"rename it or pass --input-format {sfmt}")
    elif fmt in ("parquet", "arrow") and sfmt is None:
        raise InputError(f"{first_shown}: not a valid {fmt} file (bad magic bytes); is it truncated or mislabelled?")
    src = Source(path=shown, format=fmt, files=files, compression=comp, fs=fs)
    if fmt == "tsv":
        src.delimiter = "\t"
    elif fmt == "csv":
        with _Guard(first_shown, endpoint, guard.secrets):
            head_text = _head_of(src)
        first = head_text.split(b"\n", 1)[0]
        if ext != ".csv" or (b"," not in first and (b"\t" in first or b";" in first)):
            src.delimiter = _sniff_delimiter(head_text, first_shown)
    # reading the schema here turns a storage error into a one-line error naming the URL now, not later
    with guard:
        src.schema()
    return src
