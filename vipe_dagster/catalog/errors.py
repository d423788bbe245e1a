"""Typed exceptions of the catalog package (subclasses of the project's ``vipe_dagster.errors`` family)."""

from __future__ import annotations

from ..errors import ArtifactError, InputError, VipeError


class SourceError(InputError):
    """A dataset source that cannot be resolved or read (bad URI, missing meta.parquet, wrong columns)."""


class OfflineError(SourceError):
    """``HF_HUB_OFFLINE`` is set and the requested data is not in the local Hugging Face cache."""


class DownloadError(VipeError):
    """A shard download that failed (remote missing, checksum mismatch, extraction failure)."""


class UnsafeArchiveError(ArtifactError):
    """A tar shard with a member that would escape the output folder (absolute, ``..``, link, device)."""


class CatalogError(VipeError):
    """The catalog could not be built or queried."""


class CatalogLockedError(CatalogError):
    """Another process holds the catalog's writer lock."""


class ModelError(CatalogError):
    """A SQL model project that is malformed: unknown ``ref``, dependency cycle, bad directive."""


class DataTestError(CatalogError):
    """One or more SQL data tests failed; ``failures`` lists ``(test name, failing row count, sample)``."""

    def __init__(self, message: str, failures: list[tuple[str, int, list]]):
        super().__init__(message)
        self.failures = failures


class QueryError(CatalogError):
    """A catalog query that DuckDB rejected (syntax error, write attempt on the read-only connection)."""
