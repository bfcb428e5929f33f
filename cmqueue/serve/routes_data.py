"""Storage services and the virtual directory: list a service, and browse, upload,
download, check, replicate and prefer vdir names, as `cmq storage` and `cmq vdir` do.

Vdir paths here are absolute (the API has no working directory). A file is addressed
the seed's two ways: ``/api/vdir/files/{dirname}/{basename}`` is the name (its preferred
replica), and ``/api/vdir/files/{service}/{dirname}/{basename}`` one replica.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from ..core.errors import UsageError
from .deps import cluster
from .schemas import Strict

router = APIRouter(tags=["storage and vdir"])


class Service(BaseModel):
    """A storage service of the inventory, its secrets masked."""

    model_config = {"extra": "allow"}

    name: str
    type: str


class StorageEntry(BaseModel):
    """A file or directory on a service."""

    model_config = {"extra": "allow"}

    name: str
    type: str
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None


class Replica(BaseModel):
    """A copy of a vdir file on a service."""

    model_config = {"extra": "allow"}

    service: str
    name: str
    size: int
    sha256: str | None = None


class VdirFile(BaseModel):
    """A vdir name: its size, SHA-256, time, replicas and the one it resolves to."""

    model_config = {"extra": "allow"}

    path: str
    size: int
    sha256: str
    mtime: float | None = None
    preferred: str
    replicas: list[Replica]


class Listing(BaseModel):
    """A vdir directory: its subdirectories (paths) and files."""

    path: str
    dirs: list[str]
    files: list[VdirFile]


class Added(Strict):
    """Record a file that is on a service (``SERVICE:PATH``) under a vdir name."""

    endpoint: str = Field(min_length=1, description="the file, as SERVICE:PATH")
    name: str = Field(min_length=1, description="the vdir name (a directory receives it under its own name)")


class Replicate(Strict):
    """Copy a vdir file to more services."""

    services: list[str] = Field(min_length=1)


class Prefer(Strict):
    """Pick the replica a vdir name resolves to."""

    service: str = Field(min_length=1)


class Directory(Strict):
    """A vdir directory to make (with its parents)."""

    path: str = Field(min_length=1)


def _absolute(path: str) -> str:
    if "\0" in path:
        raise UsageError("a vdir path holds no NUL")
    return "/" + path.lstrip("/")


@contextmanager
def _vdir(c: Any) -> Iterator[Any]:
    from ..storage.ops import Providers
    from ..storage.vdir import VirtualDirectory
    from ..storage.vdir_store import backend_for

    providers = Providers(c.settings.inventory)
    try:
        yield VirtualDirectory(backend_for(c.store), providers, c.settings.home)
    finally:
        providers.close()


@router.get("/api/storage", response_model=list[Service])
def list_services(c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """The storage services of the inventory, in order, secrets masked."""
    return [s.public() for s in c.settings.inventory.storage.values()]


@router.get("/api/storage/{service}/list", response_model=list[StorageEntry])
def list_service(service: str, path: str = "", recursive: bool = False,
                 c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """Files and directories under ``path`` on ``service`` (all below, with ``recursive``)."""
    from ..storage.names import object_name
    from ..storage.ops import Providers

    providers = Providers(c.settings.inventory)
    try:
        name = object_name(path, allow_root=True)
        return [e.to_dict() for e in providers(service).list_details(name, recursive=recursive)]
    finally:
        providers.close()


@router.get("/api/vdir/ls", response_model=Listing)
def vdir_ls(path: str = "/", c: Any = Depends(cluster)) -> dict[str, Any]:
    """A vdir directory's subdirectories and files (or one file)."""
    with _vdir(c) as v:
        dirs, files = v.ls(_absolute(path))
        return {"path": v.path(_absolute(path)), "dirs": dirs, "files": files}


@router.get("/api/vdir/status", response_model=dict[str, Any])
def vdir_status(path: str, verify: bool = False, c: Any = Depends(cluster)) -> dict[str, Any]:
    """A file's replicas each checked on its service (or a directory's counts)."""
    with _vdir(c) as v:
        return v.status(_absolute(path), verify=verify)


@router.post("/api/vdir/dirs", status_code=201, response_model=Directory)
def vdir_mkdir(body: Directory, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Make a vdir directory and its parents."""
    with _vdir(c) as v:
        return {"path": v.mkdir(_absolute(body.path))}


@router.post("/api/vdir/files", status_code=201, response_model=VdirFile)
def vdir_add(body: Added, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Record a file that is on a service under a vdir name (its SHA-256 computed there)."""
    with _vdir(c) as v:
        record, _ = v.add(body.endpoint, _absolute(body.name))
        return record


@router.put("/api/vdir/files/{path:path}", status_code=201, response_model=VdirFile,
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}, "required": True}})
async def vdir_upload(path: str, request: Request, service: str = Query(min_length=1)) -> dict[str, Any]:
    """Upload the body as vdir file ``path``: it is written to ``service`` as
    ``{dirname}/{basename}`` and recorded (a new replica, or an update of every one)."""
    from ..storage.names import object_name

    name = _absolute(path)
    storage = request.app.state.clusters.settings.inventory.storage
    if service not in storage:                       # before a byte of the body is read
        raise UsageError(f"unknown storage service {service!r}; services: {', '.join(storage) or 'none'}")
    object_name(name)                                # a name the services can hold, checked first too
    fd, tmp = tempfile.mkstemp(prefix="cmq-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                await run_in_threadpool(f.write, chunk)

        def store() -> dict[str, Any]:
            with _vdir(request.app.state.clusters.get()) as v:      # this thread's store connection
                target = object_name(name)
                v.providers(service).put_file(Path(tmp), target)
                record, _ = v.add(f"{service}:{target}", name)
                return record

        return await run_in_threadpool(store)
    finally:
        Path(tmp).unlink(missing_ok=True)


@router.get("/api/vdir/files/{path:path}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}},
                             "description": "the file's bytes, their SHA-256 checked"}})
def vdir_download(path: str, c: Any = Depends(cluster)) -> FileResponse:
    """Download a vdir file from its preferred replica (or the next that works), its
    SHA-256 checked before the first byte is sent; ``{service}/{dirname}/{basename}``
    reads that replica."""
    tmp = Path(tempfile.mkdtemp(prefix="cmq-download-"))
    try:
        with _vdir(c) as v:
            record, service = v.get(_absolute(path), tmp)
    except BaseException:
        _remove(tmp)
        raise
    local = tmp / Path(record["path"]).name
    return FileResponse(local, filename=local.name, media_type="application/octet-stream",
                        headers={"X-Cmq-Sha256": record["sha256"], "X-Cmq-Service": service},
                        background=BackgroundTask(_remove, tmp))


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


@router.delete("/api/vdir/files/{path:path}", response_model=dict[str, int])
def vdir_delete(path: str, purge: bool = False, c: Any = Depends(cluster)) -> dict[str, int]:
    """Forget a name or a directory (the files stay on their services unless ``purge``)."""
    with _vdir(c) as v:
        return {"forgotten": v.delete(_absolute(path), purge=purge)}


@router.post("/api/vdir/replicate/{path:path}", response_model=VdirFile)
def vdir_replicate(path: str, body: Replicate, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Copy a file to more services (as ``{dirname}/{basename}`` there), verified."""
    with _vdir(c) as v:
        return v.replicate(_absolute(path), body.services)


@router.post("/api/vdir/prefer/{path:path}", response_model=VdirFile)
def vdir_prefer(path: str, body: Prefer, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Make ``service``'s replica the one the name resolves to."""
    with _vdir(c) as v:
        return v.prefer(_absolute(path), body.service)
