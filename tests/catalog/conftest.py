"""Fixtures of the catalog tests (fake dataset repositories, a moto S3 server); helpers in catalog_fakes.py."""

from catalog_fakes import small_repos, wsdg_repo  # noqa: F401
