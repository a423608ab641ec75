"""Fixtures for the ``pwvm serve`` tests: the upstream servers (one per session)."""

from __future__ import annotations

from typing import Iterator

import pytest

from ._serve_helpers import Upstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    u = Upstream("app")
    yield u
    u.close()


@pytest.fixture(scope="session")
def callout_server() -> Iterator[Upstream]:
    u = Upstream("callout")
    yield u
    u.close()


