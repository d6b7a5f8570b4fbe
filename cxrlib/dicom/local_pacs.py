"""A throw-away local PACS: Orthanc with its DICOMweb plugin, for the PACS tests and benchmark.

Started on 127.0.0.1 on a free port with a temporary storage folder and a generated JSON config
(remote access off, one registered user, DICOM network server off), and stopped (by its process
id) when the ``with`` block ends. Debian: ``apt-get install orthanc orthanc-dicomweb``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cxrlib.core.processes import stop_process

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def orthanc_binary() -> str | None:
    """The Orthanc executable, or None."""
    found = shutil.which("Orthanc")
    if found is None and os.access("/usr/sbin/Orthanc", os.X_OK):  # /usr/sbin is not on every PATH
        found = "/usr/sbin/Orthanc"
    return found


def why_no_orthanc() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else the reason (for a skip)."""
    if orthanc_binary() is None:
        return "Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; or make orthanc)"
    if not Path(DICOMWEB_PLUGIN).is_file():
        return f"Orthanc's DICOMweb plugin is not installed ({DICOMWEB_PLUGIN}; Debian: orthanc-dicomweb)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPacs:
    """A running local Orthanc: its DICOMweb URL and its one user's credentials."""

    url: str
    username: str
    password: str = field(repr=False)
    port: int
    pid: int

    def settings(self, **changes):
        """:class:`cxrlib.dicom.web.PacsSettings` for this server."""
        from cxrlib.dicom.web import PacsSettings  # noqa: PLC0415

        return PacsSettings(url=self.url, username=self.username, password=self.password, **changes)


@contextmanager
def local_orthanc(folder: str | os.PathLike, *, start_timeout: float = 30.0) -> Iterator[LocalPacs]:
    """Run Orthanc with DICOMweb on 127.0.0.1 while the block runs.

    Args:
        folder: an empty folder for its storage, config and log.

    Raises:
        RuntimeError: Orthanc is missing or did not start in ``start_timeout`` s (the log's tail
            is in the message).
    """
    import requests  # noqa: PLC0415

    reason = why_no_orthanc()
    if reason:
        raise RuntimeError(reason)
    folder = Path(folder)
    (folder / "storage").mkdir(parents=True, exist_ok=True)
    port, user, password = free_port(), "cxr", secrets.token_urlsafe(12)
    config = {"Name": "CXR-TEST", "StorageDirectory": str(folder / "storage"),
              "IndexDirectory": str(folder / "storage"), "HttpPort": port,
              "DicomServerEnabled": False, "DicomPort": free_port(), "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {user: password},
              "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
              "StorageCompression": False, "HttpsVerifyPeers": False}
    (folder / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115  (closed after the process ends)
    proc = subprocess.Popen([orthanc_binary(), str(folder / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT, cwd=folder)
    pacs = LocalPacs(f"http://127.0.0.1:{port}/dicom-web", user, password, port, proc.pid)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/system", auth=(user, password),
                                timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "orthanc.log").read_text(errors="replace")[-600:]
                raise RuntimeError(f"Orthanc did not start on port {port}: {tail}")
            time.sleep(0.1)
        yield pacs
    finally:
        stop_process(proc)
        log.close()
