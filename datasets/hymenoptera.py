"""``hymenoptera`` — the PyTorch transfer-learning tutorial's ants/bees (seed 004), ~245 train / 153 val.

Downloaded once from the tutorial's official URL into ``$TLBENCH_CACHE/downloads`` and unpacked; offline
without the cached copy, the error says to use ``folder:PATH`` on a local copy. The tutorial evaluates on its
``val`` folder, so that folder becomes our ``test`` split (its numbers stay comparable) and val is carved
from train (seeded, stratified), recorded in the results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from .base import DatasetError
from .download import downloads_dir, fetch
from .folder import FolderSource

URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
#: folder inside the zip
ROOT_NAME = "hymenoptera_data"


def ensure_extracted(url: str | None = None, target_dir: Path | None = None) -> Path:
    """The unpacked ``hymenoptera_data`` folder, downloading and unpacking it first when absent.

    Args:
        url: where to download from (default ``URL``).
        target_dir: where to keep it (default ``$TLBENCH_CACHE/downloads``).

    Raises:
        DatasetError: offline without a cached copy, or a zip without ``hymenoptera_data/train``.
    """
    base = target_dir if target_dir is not None else downloads_dir()
    root = base / ROOT_NAME
    if (root / "train").is_dir():
        return root
    archive = fetch(
        url or URL, base / "hymenoptera_data.zip", None, "download it yourself and use folder:PATH/hymenoptera_data"
    )
    tmp = Path(tempfile.mkdtemp(prefix=".hymenoptera.", dir=base))
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp)
        if not (tmp / ROOT_NAME / "train").is_dir():
            raise DatasetError(
                f"{archive} has no {ROOT_NAME}/train folder; "
                "expected the PyTorch tutorial zip (delete it to re-download)"
            )
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp / ROOT_NAME, root)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive} is not a valid zip ({exc}); delete it to re-download") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def make_source(spec: str, argument: str | None) -> FolderSource:
    """Factory used by the dataset registry (``hymenoptera`` takes no argument).

    Raises:
        DatasetError: an argument was given, or the data cannot be obtained.
    """
    if argument:
        raise DatasetError(
            f"dataset {spec!r} takes no argument; expected hymenoptera (or folder:PATH for a local copy)"
        )
    root = ensure_extracted()
    return FolderSource(spec, root, rename_splits={"val": "test"}, source_label=f"hymenoptera ({URL})")
