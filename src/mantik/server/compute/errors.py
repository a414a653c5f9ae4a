"""Errors of the compute service, each with the HTTP status the user gets."""

from __future__ import annotations


class ComputeError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
