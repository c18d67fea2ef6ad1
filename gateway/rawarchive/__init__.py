"""The raw archive of streaming instruments: one gzip'd CSV file per sensor per half hour (aligned to :00/:30 UTC),
with a JSON metadata header and a JSON footer. The format is documented in docs/raw-archive.md; `read_archive`
returns numpy arrays for the eddy-covariance engine.
"""

from gateway.rawarchive.archive import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ArchiveData,
    ArchiveWriter,
    file_period_start,
    read_archive,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ArchiveData", "ArchiveWriter", "file_period_start", "read_archive"]
