"""Folders the package writes as one unit (predictors): written to a temporary sibling and
renamed into place, with ``files.json`` listing the sha256 of every file, which loading checks.

A folder is either the old one or the new one, never a mix: a kill while saving leaves the old
folder (or none) and a temporary sibling ``.<name>.*.tmp`` that the next save removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError

logger = logging.getLogger(__name__)

__all__ = ["FILES_NAME", "sha256_of", "folder_sha256", "writing_folder", "verify_folder"]

FILES_NAME = "files.json"


def sha256_of(path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_sha256(folder, exclude=()) -> dict[str, str]:
    """``{file name: sha256}`` of every file in ``folder`` (names in ``exclude`` left out)."""
    return {p.name: sha256_of(p) for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.name not in exclude}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def writing_folder(directory):
    """Write a folder atomically: yields a temporary sibling to fill; on success its
    ``files.json`` is written, modes made ordinary (files 0644, folder 0755, less the umask),
    everything fsynced, and it replaces ``directory`` (an existing folder there is removed
    after the rename); on an exception the temporary folder is removed and ``directory`` is
    left as it was."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise FileExistsError(f"{d} exists and is not a folder")
    d.parent.mkdir(parents=True, exist_ok=True)
    for stale in d.parent.glob(f".{d.name}.*.tmp"):  # left by a killed save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".tmp", dir=d.parent))
    try:
        yield tmp
        (tmp / FILES_NAME).write_text(json.dumps(
            {"format_version": 1, "sha256": folder_sha256(tmp, exclude=(FILES_NAME,))},
            indent=1) + "\n")
        mask = _umask()
        for p in tmp.iterdir():
            os.chmod(p, 0o666 & ~mask)
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~mask)
        old = None
        if d.exists():
            old = d.with_name(f".{d.name}.{os.getpid()}.old.tmp")
            os.rename(d, old)
        os.rename(tmp, d)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def verify_folder(directory, what: str = "predictor folder") -> bool:
    """Check every file of ``directory`` against its ``files.json``: a missing, changed or
    unlisted file raises :class:`UsageError` naming it. Returns False (after a warning) for a
    folder without ``files.json`` (saved by an older ofa-latency), True when checked."""
    d = Path(directory)
    listing = d / FILES_NAME
    if not listing.is_file():
        logger.warning("%s: no %s (saved by an older ofa-latency), so its files cannot be "
                       "checked; save it again to add one", d, FILES_NAME)
        return False
    try:
        expected = json.loads(listing.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{listing} is not a valid file listing ({exc})") from None
    actual = folder_sha256(d, exclude=(FILES_NAME,))
    missing = sorted(set(expected) - set(actual))
    unlisted = sorted(set(actual) - set(expected))
    changed = sorted(n for n in set(expected) & set(actual) if expected[n] != actual[n])
    problems = ([f"missing {missing}"] if missing else []) + \
        ([f"not listed {unlisted}"] if unlisted else []) + \
        ([f"changed since it was saved {changed}"] if changed else [])
    if problems:
        raise UsageError(f"{what} {d} does not match its {FILES_NAME}: " + "; ".join(problems)
                         + " (files of different saves mixed, or edited by hand); save it "
                           "again")
    return True
