"""Download a published file once into ``$TLBENCH_CACHE/downloads`` and check it (MD5 when published).

Only named datasets (``medmnist:NAME``, ``hymenoptera``) download; tests and offline users pass local paths.
An offline machine without the cached file gets one line telling the user to pass a path instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .base import DatasetError
from .cache import default_cache_dir
from .progress import log

#: seconds before a stalled connection is given up
TIMEOUT_S = 60.0


def downloads_dir() -> Path:
    """``<cache root>/downloads``: ``$TLBENCH_CACHE/downloads`` if set, else ``~/.cache/tlbench/downloads``."""
    return default_cache_dir() / "downloads"


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, md5: str | None, offline_hint: str) -> Path:
    """Return ``target``, downloading it from ``url`` first when absent (atomically, MD5-checked).

    Args:
        url: where to download from.
        target: where the file lives once downloaded.
        md5: published MD5 (``None`` when the publisher gives none).
        offline_hint: what the user should do instead, appended to the offline error.

    Raises:
        DatasetError: the download failed (offline...) or the MD5 does not match.
    """
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading {url} -> {target}")
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
        if md5 is not None and (actual := file_md5(tmp)) != md5:
            raise DatasetError(f"download of {url} has MD5 {actual}, expected {md5}; retry, or {offline_hint}")
        os.replace(tmp, target)
    except DatasetError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DatasetError(
            f"cannot download {url} ({' '.join(str(reason).split())}); offline? {offline_hint}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
