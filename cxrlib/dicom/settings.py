"""Where the PACS is and how to log in: :class:`PacsSettings` from the environment or a mapping.

Credentials are held out of ``repr``; a URL's ``user:password@`` part is moved into the settings
and cut from the URL (:func:`safe_url` is what messages and logs may show). TLS is verified by
default.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ENV = {"url": "CXR_PACS_URL", "username": "CXR_PACS_USER", "password": "CXR_PACS_PASSWORD",
       "token": "CXR_PACS_TOKEN", "verify": "CXR_PACS_VERIFY", "timeout": "CXR_PACS_TIMEOUT"}
"""Environment variables of the settings. ``CXR_PACS_VERIFY``: ``1`` (default), ``0``, or a CA
bundle's path. ``CXR_PACS_TIMEOUT``: seconds to wait for an answer (default 30)."""
DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class PacsSettings:
    """Where the PACS is and how to log in (credentials are left out of ``repr``).

    Attributes:
        url: the DICOMweb base URL, e.g. ``https://pacs.example.org/dicom-web``.
        username, password: HTTP basic credentials, or None.
        token: a bearer token (used instead of basic credentials), or None.
        verify: verify the server's TLS certificate (True), not (False: only for a test server),
            or the path of a CA bundle to verify it with.
        timeout: seconds to wait for the server's answer (connecting waits at most
            :data:`CONNECT_TIMEOUT`).
    """

    url: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the PACS URL must start with http:// or https:// and name a host, "
                             f"got {safe_url(self.url)!r}")
        if parts.username is not None:  # move user:password@ out of the URL
            object.__setattr__(self, "username", self.username or parts.username)
            object.__setattr__(self, "password", self.password or parts.password)
        object.__setattr__(self, "url", safe_url(self.url).rstrip("/"))
        if not float(self.timeout) > 0:
            raise ValueError(f"the PACS time-out must be a positive number of seconds, got {self.timeout}")

    @property
    def auth(self) -> str:
        """``"bearer token"``, ``"basic"`` or ``"none"`` (for messages: names no secret)."""
        return "bearer token" if self.token else "basic" if self.username else "none"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, url: str | None = None) -> "PacsSettings":
        """Settings from a mapping with the keys ``url``, ``username``, ``password``, ``token``,
        ``verify``, ``timeout`` (e.g. Streamlit's ``st.secrets["pacs"]``); ``url`` wins when given.

        Raises:
            ValueError: no URL, or a value that cannot be used.
        """
        url = url or values.get("url")
        if not url:
            raise ValueError(f"no PACS URL: pass --pacs URL or set {ENV['url']}")
        try:
            timeout = float(values.get("timeout") or DEFAULT_TIMEOUT)
        except (TypeError, ValueError):
            raise ValueError(f"the PACS time-out ({ENV['timeout']}) must be a number of seconds, "
                             f"got {values.get('timeout')!r}") from None
        return cls(url=str(url), username=values.get("username") or None,
                   password=values.get("password") or None, token=values.get("token") or None,
                   verify=_verify(values.get("verify", True)), timeout=timeout)

    @classmethod
    def from_env(cls, url: str | None = None, env: Mapping[str, str] | None = None) -> "PacsSettings":
        """Settings from the environment (:data:`ENV`); ``url`` (e.g. ``--pacs``) wins."""
        env = os.environ if env is None else env
        return cls.from_mapping({k: env.get(v) for k, v in ENV.items() if env.get(v)}, url=url)


def _verify(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("", "1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    return text  # a CA bundle


def safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (what messages and logs may show)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
