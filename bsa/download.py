"""Fetch a URL once into a cache file: later runs read the file and need no network."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(OSError):
    """The URL could not be fetched; the message names it and why."""


def fetch_once(url: str, dest: Path, timeout_s: float = 60.0) -> Path:
    """``dest`` if it exists, else the URL's bytes written there atomically (no half file is kept)."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            payload = resp.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"{url}: download failed ({e})") from None
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(payload)
    tmp.replace(dest)
    return dest
