"""Checking a config's symbols against the venue's own instrument list before a
capture starts (the supervisor calls ``registry.check_listed``), so a typo
(``NOTACOIN``) is a config error naming it instead of a silent capture of
nothing. Plain ``urllib`` with a timeout: this runs in the supervisor, once,
before any child exists.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

TIMEOUT = 5.0


class Unreachable(Exception):
    """The venue's instrument list could not be fetched (network, timeout, 5xx)."""


class NoList(Exception):
    """The server answered but has no instrument list there (HTTP 404): e.g. a test feed."""


def fetch_json(url: str, body: dict[str, Any] | None = None, timeout: float = TIMEOUT) -> Any:
    """GET (or POST ``body`` as JSON) ``url``; the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NoList(f"{url}: HTTP 404") from None
        raise Unreachable(f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Unreachable(f"{url}: {reason}") from None
    except ValueError as e:
        raise Unreachable(f"{url}: not JSON ({e})") from None
