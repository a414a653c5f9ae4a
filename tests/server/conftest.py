from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.server.golden_files import assert_golden


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    return assert_golden
