"""Byte transports with timeouts, the content-addressed cache, locks and verified downloads.

The cache holds ``blobs/<sha256>.safetensors``, ``indexes/``, ``urls/`` and ``locks/``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .._files import atomic_write, new_file
from ..checkpoint import sha256_file
from ..exceptions import CheckpointError, HubError, InputError, IntegrityError, OfflineError
from .checks import _check_bytes, _describe, _refuse_pickle_name, _sniff
from .settings import (
    _CHUNK,
    _LOCK_WAIT,
    _SCHEME,
    _SHA,
    _SNIFF,
    ENV_CACHE,
    ENV_OFFLINE,
    _file_url_path,
)

log = logging.getLogger("miso_xr.hub")


@contextmanager
def _open_stream(url: str, *, timeout: float) -> Iterator[tuple[IO[bytes], str | None, int | None]]:
    """Yield ``(stream, content_type, length)``; every failure is one HubError naming ``url``."""
    scheme = (_SCHEME.match(url) or [None, ""])[1].lower()
    if scheme in ("http", "https"):
        from .. import __version__

        request = urllib.request.Request(
            url, headers={"User-Agent": f"miso_xr/{__version__}", "Accept-Encoding": "identity"}
        )
        try:
            # the timeout bounds the connect and every read: a stalled server cannot hang us
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            err.close()
            hint = (
                " (the file is not on the server: check the hub's index)" if err.code == 404 else ""
            )
            raise HubError(f"{url} answered HTTP {err.code} {err.reason}{hint}") from None
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise HubError(f"{url} could not be reached in {timeout} s: {reason}") from None
        with response:
            length = response.headers.get("Content-Length")
            yield (
                response,
                response.headers.get("Content-Type"),
                int(length) if length and length.isdigit() else None,
            )
        return
    if scheme == "" or scheme == "file":
        path = _file_url_path(url) if scheme == "file" else url
        try:
            f = open(path, "rb")
        except OSError as err:
            raise HubError(f"{url} cannot be read: {err}") from None
        with f:
            yield f, None, os.fstat(f.fileno()).st_size
        return
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise HubError(
            f"{url}: no installed filesystem handles {scheme}:// ({err}); install its fsspec "
            "package (s3fs for s3://, gcsfs for gs://, adlfs for az://)"
        ) from None
    try:
        f = fs.open(path, "rb")
    except FileNotFoundError:
        raise HubError(f"{url} does not exist (not found on {scheme}://)") from None
    except Exception as err:  # noqa: BLE001 - each fsspec backend raises its own errors
        raise HubError(f"{url} cannot be opened: {err}") from None
    with f:
        yield f, None, getattr(f, "size", None)


def _read_small(url: str, *, timeout: float, limit: int) -> bytes:
    with _open_stream(url, timeout=timeout) as (stream, content_type, _):
        try:
            data = stream.read(limit + 1)
        except (TimeoutError, OSError, http.client.HTTPException) as err:
            raise HubError(f"{url} stopped answering while read ({err})") from None
    if len(data) > limit:
        raise HubError(f"{url} is larger than {limit} bytes; not a hub index")
    return data


# the cache: blobs/<sha256>.safetensors, indexes/, urls/, locks/


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _blob(cache: Path, sha256: str) -> Path:
    return cache / "blobs" / f"{sha256}.safetensors"


@contextmanager
def _lock(cache: Path, key: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    locks = cache / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"{key}.lock"), timeout=_LOCK_WAIT)
    try:
        lock.acquire()
    except Timeout:
        raise HubError(
            f"another process held the cache lock {lock.lock_file!r} for {_LOCK_WAIT} s; "
            "if none is running, delete that lock file"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _url_record(cache: Path, url: str) -> dict[str, Any] | None:
    try:
        return json.loads((cache / "urls" / f"{_key(url)}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _hash_ok(path: Path, sha256: str, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha256_file(path) == sha256


def _download(
    url: str,
    *,
    cache: Path,
    key: str,
    sha256: str | None,
    size: int | None,
    timeout: float,
    label: str,
) -> tuple[Path, str]:
    """Stream ``url`` to a temporary file in the cache, verify, move into place atomically.

    Called with the lock for ``key`` held. Returns the blob path and its sha256.
    """
    from tqdm.auto import tqdm

    from .._progress import show_progress

    blobs = cache / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for stale in blobs.glob(f".{key}.*.part"):  # left by a killed process; we hold the lock
        stale.unlink(missing_ok=True)
    fd, tmp_name = new_file(blobs, f".{key}.")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        head = b""
        with os.fdopen(fd, "wb") as out, _open_stream(url, timeout=timeout) as (stream, ctype, n):
            # stop reading past the expected size: a wrong or endless body cannot fill the disk
            cap = size + 1 if size is not None else None
            with tqdm(
                total=size or n,
                unit="B",
                unit_scale=True,
                desc=label,
                disable=not show_progress(),
                leave=False,
            ) as bar:
                while True:
                    want = _CHUNK if cap is None else min(_CHUNK, cap - received)
                    if want <= 0:
                        break
                    try:
                        block = stream.read(want)
                    except http.client.IncompleteRead as err:
                        raise HubError(
                            f"download of {url} was cut off after {received + len(err.partial)}"
                            f" bytes (expected {n if n is not None else size}); try again"
                        ) from None
                    except (TimeoutError, OSError, http.client.HTTPException) as err:
                        raise HubError(
                            f"{url} stopped sending after {received} bytes ({err}; read timeout "
                            f"{timeout} s)"
                        ) from None
                    except Exception as err:  # fsspec backends raise their own errors
                        raise HubError(f"{url} failed after {received} bytes: {err}") from None
                    if not block:
                        break
                    if len(head) < _SNIFF:
                        head += block[: _SNIFF - len(head)]
                    digest.update(block)
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        what = _describe(ctype, head, received)
        found = _sniff(head, received)
        if found in ("pickle", "zip"):
            _check_bytes(tmp, where=url, content_type=ctype)  # raises UnsafeCheckpointError
        if n is not None and received < n:
            raise HubError(f"download of {url} was cut off after {received} of {n} bytes")
        if size is not None and received != size:
            raise IntegrityError(
                f"{label}: {url} is {'truncated' if received < size else 'too long'}: expected "
                f"{size} bytes; {what}"
            )
        if sha256 is not None and got != sha256:
            raise IntegrityError(
                f"{label}: sha256 mismatch for {url}: expected {sha256}, got {got}; {what}"
            )
        _check_bytes(tmp, where=url, content_type=ctype)
        final = _blob(cache, got)
        os.replace(tmp, final)
        return final, got
    finally:
        tmp.unlink(missing_ok=True)


def _cached(cache: Path, url: str, sha256: str | None, size: int | None) -> Path | None:
    """The good cached file for ``url`` (pinned by ``sha256``, else by the URL's record)."""
    if sha256 is None:  # a plain URL: the hash it had when last downloaded
        record = _url_record(cache, url) or {}
        sha256, size = record.get("sha256"), record.get("size")
        if not isinstance(sha256, str) or not _SHA.match(sha256):
            return None
    final = _blob(cache, sha256)
    if not final.is_file():
        return None
    if _hash_ok(final, sha256, size):  # checked on every load: disks and copies rot
        return final
    final.unlink(missing_ok=True)  # never leave a bad file under a final name
    log.warning("cached %s did not match its sha256 and was removed", final)
    return None


def _fetch_url(
    url: str,
    *,
    sha256: str | None,
    size: int | None,
    cache: Path,
    offline: bool,
    timeout: float,
    label: str,
) -> tuple[Path, str]:
    _refuse_pickle_name(url)
    rotted = sha256 is not None and _blob(cache, sha256).is_file()
    found = _cached(cache, url, sha256, size)
    if found is not None:
        return found, found.stem
    if offline:
        if rotted:
            raise IntegrityError(
                f"offline mode: the cached copy of {label!r} ({str(_blob(cache, sha256))!r}) did "
                f"not match sha256 {sha256} and was removed; fetch it again with internet"
            )
        expected = f"sha256 {sha256}" if sha256 else "sha256 unknown (pass sha256=)"
        looked = str(_blob(cache, sha256)) if sha256 else str(cache / "urls" / f"{_key(url)}.json")
        raise OfflineError(
            f"offline mode (offline=True or {ENV_OFFLINE}=1): {label!r} ({expected}) is not in the "
            f"cache; looked at {looked!r}. On a machine with internet run `miso-xr hub fetch "
            f"{label} --cache-dir DIR` and copy DIR here (point {ENV_CACHE} at it)"
        )
    key = sha256 or f"url-{_key(url)}"
    with _lock(cache, key):
        found = _cached(cache, url, sha256, size)  # another process may have fetched it meanwhile
        if found is not None:
            return found, found.stem
        path, got = _download(
            url, cache=cache, key=key, sha256=sha256, size=size, timeout=timeout, label=label
        )
        if sha256 is None:
            record = {"url": url, "sha256": got, "size": path.stat().st_size}
            atomic_write(cache / "urls" / f"{_key(url)}.json", json.dumps(record).encode())
    return path, got


def _fetch_hf(url: str, *, sha256: str | None, offline: bool, timeout: float) -> tuple[Path, str]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise HubError(
            f"{url!r} needs the huggingface_hub package: pip install 'miso_xr[hf]'"
        ) from None
    parts = url[len("hf://") :].split("/")
    if len(parts) < 3 or not all(parts):
        raise InputError(
            f"{url!r} is not an hf:// checkpoint URL; write hf://ORG/REPO/path/file.safetensors "
            "(or hf://ORG/REPO@REVISION/path/file.safetensors)"
        )
    repo, _, revision = parts[1].partition("@")
    filename = "/".join(parts[2:])
    _refuse_pickle_name(filename)
    try:
        local = Path(
            hf_hub_download(
                repo_id=f"{parts[0]}/{repo}",
                filename=filename,
                revision=revision or None,
                local_files_only=offline,
                etag_timeout=timeout,
            )
        )
    except Exception as err:  # noqa: BLE001 - huggingface_hub raises many error types
        cls = OfflineError if offline else HubError
        raise cls(f"{url!r} could not be fetched from the Hugging Face Hub: {err}") from None
    return _verify_local(local, sha256=sha256, where=url)


def _verify_local(path: Path, *, sha256: str | None, where: str) -> tuple[Path, str]:
    _refuse_pickle_name(str(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {where!r} does not exist (looked at {str(path)!r})")
    _check_bytes(path, where=where)
    got = sha256_file(path)
    if sha256 is not None and got != sha256:
        raise IntegrityError(f"sha256 mismatch for {where!r}: expected {sha256}, got {got}")
    return path, got
