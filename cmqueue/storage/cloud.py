"""Object stores through Apache Libcloud: S3 and S3-compatible servers, Azure Blob, and
any other libcloud storage driver by name.

Each file's SHA-256 and time are kept as object metadata (``sha256``, ``mtime``):
libcloud's ``hash`` is an ETag (an MD5, or not even that for multipart uploads), so cmq
computes the digest while the data streams and checks it before it reports the file as
stored; an upload that fails the check is removed. S3-compatible servers are reached
path-style at their endpoint; libcloud adds ``?Version=2006-03-01`` to every GET, which
AWS ignores and some servers (SeaweedFS) answer with 501 on listings, so it is dropped.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import mimetypes
import posixpath
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .base import (
    CHUNK,
    Entry,
    Hashing,
    NotFoundError,
    OnBytes,
    Provider,
    StorageError,
    StorageUnavailableError,
    counted,
)
from .cloud_drivers import make_driver, read_environment_once
from .cloud_metadata import META_PREFIX, http_time, mtime_value, parse_mtime, served_md5
from .config import StorageConfig
from .names import check_name
from .signed_http import FileSlice, SignedHttp

T = TypeVar("T")


def _metadata(obj: Any) -> dict[str, Any]:
    """An object's metadata with its keys in lower case (Azure keeps them as written:
    rclone writes ``Mtime``; a GET's headers come lower case anyway)."""
    return {str(k).lower(): v for k, v in (obj.meta_data or {}).items()}


def _mtime(obj: Any) -> float:
    stored = parse_mtime(_metadata(obj).get("mtime"))
    if stored is not None:
        return stored
    stamp = (obj.extra or {}).get("last_modified") or ""
    if not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(stamp)
        return parsed.timestamp() if parsed else 0.0


class CloudProvider(Provider):
    """A bucket or container of an object store, through a libcloud driver."""

    has_dirs = False
    reads_to_hash = True

    def __init__(self, config: StorageConfig) -> None:
        super().__init__(config)
        self.driver = self._call("connect", lambda: make_driver(config))
        read_environment_once(self.driver)
        self._container: Any = None
        conn = getattr(self.driver, "connection", None)
        lean = config.type in META_PREFIX and self._call("connect", lambda: SignedHttp.usable(conn))
        self._http = SignedHttp(conn) if lean else None

    # -- errors ---------------------------------------------------------------------------
    def _call(self, name: str, fn: Callable[[], T]) -> T:
        """Run a libcloud call, turning its errors into one-line cmq errors."""
        from libcloud.common.types import InvalidCredsError, LibcloudError
        from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError

        try:
            return fn()
        except ObjectDoesNotExistError:
            raise NotFoundError(f"{self.where(name)}: no such file") from None
        except ContainerDoesNotExistError:
            raise StorageUnavailableError(f"{self.config.where}: container (bucket) {self.config.container!r} "
                                          "does not exist") from None
        except InvalidCredsError:
            raise StorageUnavailableError(f"{self.config.where}: the server refused the key and secret") from None
        except LibcloudError as e:
            raise StorageError(f"{self.where(name)}: {_first_line(e.value if hasattr(e, 'value') else e)}") from None
        except (OSError, ConnectionError, http.client.HTTPException) as e:
            raise StorageUnavailableError(f"{self.config.where}: cannot reach "
                                          f"{self.config.endpoint or self.config.type}: {_first_line(e)}") from None
        except Exception as e:      # requests' errors and the drivers' own
            if type(e).__module__.startswith(("requests", "urllib3", "libcloud")):
                raise StorageUnavailableError(f"{self.config.where}: {type(e).__name__}: {_first_line(e)}") from None
            raise

    @property
    def container(self) -> Any:
        """The container (bucket), looked up once."""
        if self._container is None:
            if self._http is not None:
                self._container = self._find_container()
            else:
                self._container = self._call("", lambda: self.driver.get_container(self.config.container))
        return self._container

    def _find_container(self) -> Any:
        """The container, after a HEAD on the kept-alive connection says it exists (the
        request libcloud's ``get_container`` makes, without a connection of its own)."""
        from libcloud.storage.base import Container

        name = self.config.container
        params = {"restype": "container"} if self.config.type == "azure" else None
        answer = self._call("", lambda: self._http.request("HEAD", f"/{name}", params=params))
        self._call("", answer.read)
        if answer.status == 404:
            raise StorageUnavailableError(f"{self.config.where}: container (bucket) {name!r} does not exist")
        if answer.status in (401, 403):
            raise StorageUnavailableError(f"{self.config.where}: the server refused the key and secret")
        if answer.status != 200:
            raise StorageError(f"{self.config.where}: container (bucket) {name!r}: the server answered HTTP "
                               f"{answer.status}")
        return Container(name=name, extra={}, driver=self.driver)

    # -- the contract -----------------------------------------------------------------
    def _object(self, name: str) -> Any | None:
        from libcloud.storage.types import ObjectDoesNotExistError

        container = self.container
        try:
            return self._call(name, lambda: self.driver.get_object(container.name, name))
        except NotFoundError:
            return None
        except ObjectDoesNotExistError:
            return None

    def _entry(self, obj: Any) -> Entry:
        etag = (obj.hash or "").strip('"').lower()
        return Entry(name=obj.name, size=int(obj.size or 0), mtime=_mtime(obj),
                     sha256=_metadata(obj).get("sha256") or None,
                     md5=etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None)

    def describe(self, names: list[str]) -> dict[str, Entry]:
        # One listing of the names' common directory: Azure lists each object's metadata
        # (its SHA-256); S3 lists only ETags, which are MD5s for files put in one piece.
        if not names:
            return {}
        top = posixpath.commonpath([posixpath.dirname(check_name(n)) for n in names])
        listed = {o.name: o for o in self._below(f"{top}/" if top else "")}
        found = {}
        for name in names:
            obj = listed.get(name)
            if obj is not None:
                entry = self._entry(obj)
                if entry.sha256 is None and entry.md5 is None:       # a multipart upload: ask for its metadata
                    full = self._object(name)
                    entry = self._entry(full) if full is not None else entry
                    entry.sha256 = entry.sha256 or self.hash(name)
                found[name] = entry
        return found

    def _below(self, prefix: str) -> Iterator[Any]:
        container = self.container
        return iter(self._call(prefix, lambda: list(self.driver.iterate_container_objects(container, prefix=prefix))))

    def stat(self, name: str) -> Entry | None:
        check_name(name)
        if not name:
            return Entry(name="", is_dir=True)
        obj = self._object(name)
        if obj is not None:
            return self._entry(obj)
        return Entry(name=name, is_dir=True) if self._anything_below(name + "/") else None

    def _anything_below(self, prefix: str) -> bool:
        """Whether some object's name starts with ``prefix``: a listing of one object (of
        a first page through libcloud), not of all of them."""
        if self._http is None:
            container = self.container
            return self._call(prefix, lambda: next(iter(self.driver.iterate_container_objects(container,
                                                                                            prefix=prefix)),
                                                    None)) is not None
        from xml.etree import ElementTree

        name = self.container.name
        params = ({"restype": "container", "comp": "list", "prefix": prefix, "maxresults": "1"}
                  if self.config.type == "azure" else {"prefix": prefix, "max-keys": "1"})
        answer = self._raw(prefix, f"/{name}", "GET", params=params)
        if answer.status != 200:
            raise StorageError(f"{self.where(prefix)}: the server answered a listing with HTTP {answer.status}"
                               f"{_message(answer.body)}")
        try:
            root = ElementTree.fromstring(answer.body)
        except ElementTree.ParseError as e:
            raise StorageError(f"{self.where(prefix)}: the server's listing is not XML: {e}") from None
        return any(el.tag.rpartition("}")[2] in ("Contents", "Blob") for el in root.iter())

    def list(self, directory: str = "", recursive: bool = False) -> list[Entry]:
        check_name(directory)
        prefix = f"{directory}/" if directory else ""
        found: dict[str, Entry] = {}
        for obj in self._below(prefix):
            rest = obj.name[len(prefix):]
            if obj.name.endswith("/") and (recursive or not rest):
                continue                      # a directory marker (rclone, the S3 console): no file
            if recursive or "/" not in rest:
                found[obj.name] = self._entry(obj)
            else:
                sub = prefix + rest.split("/", 1)[0]
                found.setdefault(sub, Entry(name=sub, is_dir=True))
        if not found and directory:
            entry = self.stat(directory)
            if entry is None:
                raise NotFoundError(f"{self.where(directory)}: no such directory")
            return [entry] if not entry.is_dir else []
        return sorted(found.values(), key=lambda e: e.name)

    def read(self, name: str) -> Iterator[bytes]:
        check_name(name)
        if self.config.type in META_PREFIX:
            return self._get(name)[1]
        obj = self._object(name)
        if obj is None:
            raise NotFoundError(f"{self.where(name)}: no such file")
        return self._download(name, obj)

    def _download(self, name: str, obj: Any) -> Iterator[bytes]:
        stream = self._call(name, lambda: self.driver.download_object_as_stream(obj, chunk_size=CHUNK))
        return self._guarded(name, stream)

    def get_file(self, name: str, local: Path, on_bytes: OnBytes | None = None) -> Entry:
        # S3 and Azure: one GET, whose headers carry the SHA-256 and time kept as metadata.
        # Other drivers: a HEAD, then a GET. An object that another tool stored has no
        # SHA-256: it is checked against the MD5 the service keeps (Content-MD5, or the ETag
        # of an object put in one piece), else against a second read.
        check_name(name)
        if self.config.type in META_PREFIX:
            headers, chunks = self._get(name)
            prefix = META_PREFIX[self.config.type]
            meta = {k[len(prefix):]: v for k, v in headers.items() if k.startswith(prefix)}
            mtime = parse_mtime(meta.get("mtime")) or http_time(headers.get("last-modified", ""))
            return self.receive(name, counted(chunks, on_bytes), local, meta.get("sha256"), mtime,
                                md5=served_md5(headers), reread=lambda: self._get(name)[1])
        obj = self._object(name)
        if obj is None:
            raise NotFoundError(f"{self.where(name)}: no such file")
        entry = self._entry(obj)
        return self.receive(name, counted(self._download(name, obj), on_bytes), local, entry.sha256, entry.mtime,
                            md5=entry.md5, reread=lambda: self._download(name, obj))

    def _get(self, name: str) -> tuple[dict[str, str], Iterator[bytes]]:
        """One GET of object ``name`` (S3, Azure): its headers and its bytes, in CHUNK pieces."""
        path = self.driver._get_object_path(self.container, name)
        if self._http is not None:
            answer = self._call(name, lambda: self._http.request("GET", path))
            if answer.status != 200:
                self._call(name, answer.read)
                if answer.status == 404:
                    raise NotFoundError(f"{self.where(name)}: no such file")
                raise StorageError(f"{self.where(name)}: the server answered HTTP {answer.status}")
            return _lowered(answer.getheaders()), self._guarded(name, self._body(answer))
        try:
            response = self._call(name, lambda: self.driver.connection.request(path, method="GET", stream=True,
                                                                                raw=True))
        except StorageError as e:
            if "404" in str(e) or "Not Found" in str(e):
                raise NotFoundError(f"{self.where(name)}: no such file") from None
            raise
        if response.status == 404:
            raise NotFoundError(f"{self.where(name)}: no such file")
        if response.status != 200:
            raise StorageError(f"{self.where(name)}: the server answered HTTP {response.status}")
        return response.headers, self._guarded(name, response.iter_content(CHUNK))

    def _body(self, answer: http.client.HTTPResponse) -> Iterator[bytes]:
        """The body of ``answer`` in CHUNK pieces; the connection is closed when the
        reader stops before the end (it cannot carry the next request)."""
        try:
            while chunk := answer.read(CHUNK):
                yield chunk
        finally:
            if not answer.isclosed():
                self._http.close()

    def _guarded(self, name: str, stream: Iterable[bytes]) -> Iterator[bytes]:
        it = iter(stream)
        while True:
            chunk = self._call(name, lambda: next(it, None))
            if chunk is None:
                return
            yield chunk

    def write(self, name: str, chunks: Iterable[bytes], sha256: str, mtime: float | None = None) -> Entry:
        if not check_name(name):
            raise StorageError(f"{self.where(name)}: the root is not a file")
        meta = {"sha256": sha256}
        if mtime is not None:
            meta["mtime"] = mtime_value(self.config.type, mtime)
        stream = Hashing(chunks)
        container = self.container
        obj = self._call(name, lambda: self.driver.upload_object_via_stream(iter(stream), container, name,
                                                                          extra={"meta_data": meta}))
        if stream.hexdigest() != sha256:
            self._call(name, lambda: self.driver.delete_object(obj))
            raise StorageError(f"{self.where(name)}: the data does not match its SHA-256; the upload was removed")
        return Entry(name=name, size=stream.size, mtime=mtime if mtime is not None else _mtime(obj), sha256=sha256)

    def put_file(self, local: Path, name: str, on_bytes: OnBytes | None = None) -> Entry:
        # One request carrying the whole file, after one read of it for the SHA-256 (kept as
        # metadata) and the MD5, sent as Content-MD5, which the server checks: a PUT (S3), a
        # Put Blob (Azure: libcloud sends anything above 4 MiB as blocks one after another,
        # at half the rate), on the kept-alive connection (else S3 through libcloud).
        # Larger files (above SINGLE_PUT) and other drivers go by the stream path (multipart
        # uploads, blocks); so does an empty file on Azure, which libcloud sends wrong.
        size = local.stat().st_size
        kind = self.config.type
        if kind not in SINGLE_PUT or size > SINGLE_PUT[kind] or (kind == "azure" and not size):
            return super().put_file(local, name, on_bytes)
        if not check_name(name):
            raise StorageError(f"{self.where(name)}: the root is not a file")
        sha, md5 = _digests(local)
        st = local.stat()
        meta = {"sha256": sha, "mtime": mtime_value(kind, st.st_mtime)}
        content_md5 = base64.b64encode(md5).decode()
        container = self.container
        if kind == "azure" or self._http is not None:
            headers = {"Content-Length": str(st.st_size), "Content-MD5": content_md5,
                       "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
                       **{f"{META_PREFIX[kind]}{k}": v for k, v in meta.items()}}
            if kind == "azure":
                headers["x-ms-blob-type"] = "BlockBlob"
            with open(local, "rb") as f:
                response = self._raw(name, self.driver._get_object_path(container, name), "PUT", headers,
                                     FileSlice(f, st.st_size))
            if response.status != (201 if kind == "azure" else 200):
                raise StorageError(f"{self.where(name)}: the server answered the upload with HTTP {response.status}"
                                   f"{_message(response.body)}")
            etag = response.headers.get("etag", "").strip('"')
            if kind == "s3" and len(etag) == 32 and etag != md5.hex():
                self._call(name, lambda: self.delete(name))
                raise StorageError(f"{self.where(name)}: the server's MD5 differs from the file's; "
                                   "the upload was removed")
        else:
            obj = self._call(name, lambda: self.driver.upload_object(
                str(local), container, name, extra={"meta_data": meta}, verify_hash=False,
                headers={"Content-MD5": content_md5}))
            etag = (obj.hash or "").strip('"')
            if len(etag) == 32 and etag != md5.hex():
                self._call(name, lambda: self.driver.delete_object(obj))
                raise StorageError(f"{self.where(name)}: the server's MD5 differs from the file's; "
                                   "the upload was removed")
        if on_bytes is not None:
            on_bytes(st.st_size)
        return Entry(name=name, size=st.st_size, mtime=st.st_mtime, sha256=sha)

    def copy_within(self, source: str, dest: str) -> Entry | None:
        # S3 and Azure copy an object inside the store (its metadata, the SHA-256 and time,
        # go with it); the bytes never come through here. Other drivers: None (streamed).
        if self.config.type not in META_PREFIX or not check_name(source):
            return None
        if not check_name(dest):
            raise StorageError(f"{self.where(dest)}: the root is not a file")
        connection, container = self.driver.connection, self.container
        source_path = self.driver._get_object_path(container, source)
        if self.config.type == "s3":
            headers = {"x-amz-copy-source": source_path}
        else:
            prefix = f"/{connection.account_prefix}" if getattr(connection, "account_prefix", None) else ""
            scheme = "https" if connection.secure else "http"
            headers = {"x-ms-copy-source": f"{scheme}://{connection.host}:{connection.port}{prefix}{source_path}"}
        dest_path = self.driver._get_object_path(container, dest)
        response = self._raw(source, dest_path, "PUT", headers)
        body = response.body.decode("utf-8", "replace") if response.status == 200 else ""
        if response.status == 404:
            raise NotFoundError(f"{self.where(source)}: no such file")
        if response.status == 400 and self.config.type == "s3":
            return None                       # above S3's copy limit (5 GiB): streamed instead
        if response.status not in (200, 201, 202) or "<Error>" in body:
            raise StorageError(f"{self.where(dest)}: the server answered the copy with HTTP {response.status}")
        if self.config.type == "azure":
            self._copied(dest, dest_path, response.headers)
        entry = self.stat(dest)
        if entry is None:
            raise StorageError(f"{self.where(dest)}: the server accepted the copy but the file is not there")
        entry.verified = "service"
        return entry

    def _raw(self, name: str, path: str, method: str, headers: dict[str, str] | None = None,
             data: Any = None, params: dict[str, str] | None = None) -> Answer:
        """One request whose answer's status is read here (no error raised for it): its
        status, headers (names in lower case) and body."""
        if self._http is not None:
            def send() -> Answer:
                answer = self._http.request(method, path, headers, data, params)
                return Answer(answer.status, _lowered(answer.getheaders()), answer.read())
            return self._call(name, send)
        response = self._call(name, lambda: self.driver.connection.request(path, method=method, headers=headers or {},
                                                                            data=data, params=params, raw=True))
        body = response.body if response.status < 300 or method != "HEAD" else b""
        return Answer(response.status, _lowered(response.headers.items()),
                      body if isinstance(body, bytes) else (body or "").encode())

    def _copied(self, name: str, path: str, headers: dict[str, str]) -> None:
        """Wait for an Azure copy the server reported pending (a large blob) to end."""
        deadline = time.monotonic() + COPY_WAIT
        pause = 0.05
        while (headers.get("x-ms-copy-status") or "success") == "pending":
            if time.monotonic() > deadline:
                raise StorageError(f"{self.where(name)}: the server's copy did not end in {COPY_WAIT:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            headers = self._raw(name, path, "HEAD").headers
        if headers.get("x-ms-copy-status") not in (None, "success"):
            raise StorageError(f"{self.where(name)}: the server's copy ended "
                               f"{headers.get('x-ms-copy-status')}: {headers.get('x-ms-copy-status-description', '')}")

    def delete(self, name: str) -> int:
        check_name(name)
        obj = self._object(name) if name else None
        if obj is not None:
            self._call(name, lambda: self.driver.delete_object(obj))
            return 1
        below = list(self._below(f"{name}/" if name else ""))
        if not below:
            raise NotFoundError(f"{self.where(name)}: no such file or directory")
        if self.config.type == "s3":
            for i in range(0, len(below), DELETE_BATCH):
                self._delete_many(name, [o.name for o in below[i:i + DELETE_BATCH]])
        else:
            for o in below:
                self._call(o.name, lambda o=o: self.driver.delete_object(o))
        return sum(1 for o in below if not o.name.endswith("/"))

    def _delete_many(self, name: str, keys: list[str]) -> None:
        """Delete up to DELETE_BATCH objects of an S3 bucket in one request (DeleteObjects)."""
        from xml.sax.saxutils import escape

        body = ("<Delete><Quiet>true</Quiet>"
                + "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
                + "</Delete>").encode()
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                   "Content-Type": "application/xml", "Content-Length": str(len(body))}
        path = self.driver._get_container_path(self.container)
        response = self._call(name, lambda: self.driver.connection.request(
            path, method="POST", params={"delete": ""}, data=body, headers=headers, raw=True))
        text = response.body.decode("utf-8", "replace") if isinstance(response.body, bytes) else str(response.body)
        if response.status != 200 or "<Error>" in text:
            detail = text.split("<Message>", 1)[1].split("</Message>", 1)[0] if "<Message>" in text else ""
            raise StorageError(f"{self.where(name)}: the server did not delete every object "
                               f"(HTTP {response.status}{': ' + detail if detail else ''})")

    def mkdir(self, name: str) -> bool:
        check_name(name)
        _ = self.container                    # the bucket must exist
        return False

    def list_details(self, directory: str = "", recursive: bool = False) -> list[Entry]:
        # An S3 listing gives no metadata: each file's is read with a HEAD (as rclone does
        # for times), so the SHA-256 and time shown are those stored, as Azure lists them.
        entries = self.list(directory, recursive)
        if self.config.type != "s3":
            return entries
        detailed = []
        for entry in entries:
            obj = None if entry.is_dir else self._object(entry.name)
            detailed.append(self._entry(obj) if obj is not None else entry)
        return detailed

    def empty_dirs(self, directory: str = "") -> list[str]:
        # Directory markers (``name/``, zero bytes) with nothing else below them.
        prefix = f"{directory}/" if directory else ""
        names = [o.name for o in self._below(prefix)]
        markers = sorted(n for n in names if n.endswith("/") and n != prefix)
        return [m[:-1] for m in markers if not any(o != m and o.startswith(m) for o in names)]

    def make_empty_dir(self, name: str) -> None:
        # No directories here: a directory marker, as rclone and the S3 console make them
        # (one PUT of nothing: a streamed upload of it becomes `name/name` on some servers).
        if not check_name(name):
            return
        marker = name + "/"
        if self._object(marker) is not None:
            return
        container = self.container
        if self.config.type not in META_PREFIX:
            self._call(marker, lambda: self.driver.upload_object_via_stream(iter([b""]), container, marker))
            return
        # (Azure signs an empty body's length as nothing: the header is left to http.client.)
        headers = {"x-ms-blob-type": "BlockBlob"} if self.config.type == "azure" else {"Content-Length": "0"}
        answer = self._raw(marker, self.driver._get_object_path(container, marker), "PUT", headers, b"")
        if answer.status not in (200, 201):
            raise StorageError(f"{self.where(marker)}: the server answered the directory marker with HTTP "
                               f"{answer.status}{_message(answer.body)}")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        conn = getattr(self.driver, "connection", None)
        session = getattr(getattr(conn, "connection", None), "session", None)
        if session is not None:
            session.close()


@dataclass
class Answer:
    """A server's answer, read whole."""

    status: int
    headers: dict[str, str]               #: names in lower case
    body: bytes


def _lowered(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict with their names in lower case."""
    return {k.lower(): v for k, v in headers}


def _message(body: bytes) -> str:
    """``: MESSAGE`` of an S3 or Azure XML error body, else nothing."""
    text = body.decode("utf-8", "replace")
    return f": {_first_line(text)}" if "<Message>" in text else ""


#: Objects deleted in one S3 request at most (the API's limit).
DELETE_BATCH = 1000

#: Seconds an Azure copy the server reports pending is waited for.
COPY_WAIT = 3600.0

#: Largest file sent in one request, by service type (S3's limit is 5 GiB; Azure's Put
#: Blob, at the API version libcloud speaks, 256 MiB).
SINGLE_PUT = {"s3": 4 << 30, "azure": 256 << 20}


def _digests(path: Path) -> tuple[str, bytes]:
    """SHA-256 (hex) and MD5 (raw) of a local file, from one read."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.digest()


def _first_line(e: object) -> str:
    text = str(e).strip()
    if "<Message>" in text:                   # an S3 XML error: its message
        text = text.split("<Message>", 1)[1].split("</Message>", 1)[0]
    return (text.splitlines() or ["?"])[0][:200]
