"""What the REST API's handlers read of a request: aiohttp's ``web.Request`` and the fast
lane's ``FastRequest`` (``rest_fast.py``) both have it, so one handler serves both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class BodyStream(Protocol):
    def is_eof(self) -> bool:
        """Whether every byte of the body has arrived (a read cannot wait)."""
        ...


class RestRequest(Protocol):
    """A request as ``RestApi``'s order handlers, middleware and CORS use it."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str:
        """The decoded path."""
        ...

    @property
    def raw_path(self) -> str:
        """The request target as sent (path and query): what a signature covers."""
        ...

    @property
    def query(self) -> Mapping[str, str]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def body_exists(self) -> bool: ...
    @property
    def content(self) -> BodyStream: ...
    async def read(self) -> bytes: ...
