"""Checks of the files and folders a command is about to write, made before its work: a path that cannot be written
is refused at once, naming the option and the fix, instead of a traceback after minutes of computing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["OutputPathError", "check_output_files", "check_output_folder"]


class OutputPathError(ValueError):
    """An output path cannot be written; the message names the option, the path and the fix."""


def _writable_folder(option: str, path: Path, folder: Path) -> None:
    if not folder.is_dir():
        raise OutputPathError(f"{option} {path}: the folder {folder} does not exist; create it or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: the folder {folder} is not writable by this user; choose a "
                              "writable place")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same existing file (links included), or the same path to be made."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_files(outputs: Sequence[tuple[str, Path | None]],
                       inputs: Sequence[tuple[str, Path | None]] = ()) -> None:
    """Each (option, file) to be written (None: not asked for): not a folder, in an existing writable folder, and
    writable if it exists; not one of the `inputs` (option, file) the command reads (writing it would destroy the
    data before or while it is read: `flux budget data.csv --out data.csv` overwrote its input) and not a file
    another output option writes too (one would silently replace the other)."""
    given = [(option, path) for option, path in outputs if path is not None]
    for option, written in given:
        for source, read in inputs:
            if read is not None and _same_file(written, read):
                raise OutputPathError(f"{option} {written}: is the input {source} {read}; writing it would destroy "
                                      "the input: give another output file")
    for i, (option, written) in enumerate(given):
        for other, other_path in given[:i]:
            if _same_file(written, other_path):
                raise OutputPathError(f"{option} {written}: {other} writes the same file; give each output its own "
                                      "file")
    for option, path in outputs:
        if path is None:
            continue
        if path.is_dir():
            raise OutputPathError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'out.csv'}")
        _writable_folder(option, path, path.parent)
        if path.exists() and not os.access(path, os.W_OK):
            raise OutputPathError(f"{option} {path}: the file exists and is not writable by this user")


def check_output_folder(option: str, path: Path) -> None:
    """A folder the command will create if needed (with its parents): not a file, and its nearest existing
    ancestor a writable folder."""
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path}: is a file, not a folder; give a folder (created if missing)")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{option} {path}: {ancestor} is a file, so the folder cannot be created there")
    _writable_folder(option, path, ancestor)
