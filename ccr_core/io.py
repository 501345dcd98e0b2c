"""Safe file handling shared by every artefact writer: atomic writes, content hashes, JSON."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def matches_sha256(path: str | os.PathLike, expected: str) -> bool:
    """Whether ``path``'s SHA-256 is ``expected``, hashing it only when it changed since the last check.

    A successful check is remembered in ``.verified.json`` beside the file as (size, mtime in ns,
    hash); a file with the same size and modification time as then is not hashed again (a 1.2 GB
    text-state cache took 3.4 s to hash at every dashboard start). Any write, truncation or
    replacement changes the size or the time and brings the full hash back.
    """
    path = Path(path)
    stat = path.stat()
    stamp_path = path.parent / ".verified.json"
    try:
        stamps = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamps = {}
    if not isinstance(stamps, dict):
        stamps = {}
    if stamps.get(path.name) == [stat.st_size, stat.st_mtime_ns, expected]:
        return True
    if sha256_file(path) != expected:
        return False
    stamps[path.name] = [stat.st_size, stat.st_mtime_ns, expected]
    try:
        write_json_atomic(stamp_path, stamps)
    except OSError:
        pass  # a read-only cache is still verified, just again next time
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A reader therefore sees either the old file or the complete new one, never half a file, even if
    the writer is killed (the rename is atomic on POSIX file systems).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``path`` (created if needed), held for the block.

    Writers of a shared cache take it, so two processes filling the same cache run one after the
    other; the second then finds the finished cache instead of writing over it. The kernel drops
    the lock when its holder dies, even by ``kill -9``.
    """
    import fcntl  # here, not at the top: POSIX only, and only cache writers need it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def try_file_lock(path: str | os.PathLike) -> Iterator[bool]:
    """:func:`file_lock` without waiting: yields True holding the lock, False when another process holds it."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def verify_manifest(
    folder: str | os.PathLike, name: str, kind: str, required: tuple[str, ...], error: type[Exception], what: str, *,
    missing_hint: str = "", fields: tuple[str, ...] = (), expected_identity: dict | None = None,
    identity_of: str = "backbone configuration", remember_hashes: bool = False,
) -> dict:
    """Check an artefact folder against its manifest ``folder/name`` and return the manifest.

    Every artefact writer (checkpoint, feature-map cache, text-state cache) removes its manifest first
    and writes it last, holding ``"kind"`` and ``"sha256": {file: hex digest}``. Refused, each with
    ``error`` naming the file: a missing manifest (an interrupted write), unreadable JSON, another
    ``kind``, a manifest that lacks a list-valued ``fields`` entry or the hash of a ``required`` file,
    an ``"identity"`` other than ``expected_identity`` (when given), and a listed file that is missing
    or whose SHA-256 differs. ``remember_hashes``: re-hash only files changed since their last check
    (:func:`matches_sha256`), for large caches read at every start.
    """
    folder = Path(folder)
    path = folder / name
    if not path.exists():
        raise error(f"{folder}: not a complete {what} ({name} missing{missing_hint})")
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise error(str(exc)) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        raise error(f"{path}: not a CCR Lab {what} manifest")
    for key in fields:
        if not isinstance(manifest.get(key), list):
            raise error(f"{path}: incomplete {what} manifest (needs a list {key!r})")
    hashes = manifest.get("sha256")
    if not isinstance(hashes, dict) or not set(required) <= set(hashes):
        raise error(f"{path}: does not list the SHA-256 of {' and '.join(required)}")
    if expected_identity is not None and manifest.get("identity") != expected_identity:
        raise error(f"{folder}: built for {json.dumps(manifest.get('identity'))[:200]}, not for the requested {identity_of}")
    for file, digest in hashes.items():
        if not (folder / file).is_file():
            raise error(f"{folder / file}: missing (listed in {name})")
        if not (matches_sha256(folder / file, digest) if remember_hashes else sha256_file(folder / file) == digest):
            raise error(f"{folder / file}: SHA-256 does not match {name} (altered or truncated)")
    return manifest
