"""The raw archive of streaming instruments: one file per sensor per half hour (aligned to :00/:30 UTC) with a JSON
metadata header and a JSON footer — format 2 binary and columnar (`columnar`), format 1 gzip'd CSV still read. The
formats are documented in docs/raw-archive.md; `read_archive` returns numpy arrays for the eddy-covariance engine.
Writing needs only the standard library.
"""

from gateway.rawarchive.archive import (
    CSV_FORMAT_VERSION,
    FORMAT_NAME,
    FORMAT_VERSION,
    SUFFIXES,
    ArchiveData,
    ArchiveWriter,
    CsvArchiveWriter,
    archive_suffix,
    check_archive_bytes,
    file_period_start,
    read_archive,
    read_archive_bytes,
)

__all__ = ["CSV_FORMAT_VERSION", "FORMAT_NAME", "FORMAT_VERSION", "SUFFIXES", "ArchiveData", "ArchiveWriter",
           "CsvArchiveWriter", "archive_suffix", "check_archive_bytes", "file_period_start", "read_archive",
           "read_archive_bytes"]
