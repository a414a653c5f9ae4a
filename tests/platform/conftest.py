"""The browser fixtures of the platform's browser tests."""

from tests.support.browser import browser, page  # noqa: F401 (fixtures)
