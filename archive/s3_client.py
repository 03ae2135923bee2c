"""Connecting to S3-compatible storage (AWS, Backblaze B2, MinIO, R2) through s3fs, and saying what went wrong in one line.

Credentials come from where botocore looks (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, a profile, ~/.aws) after an
optional ``.env`` is loaded; the endpoint from ``--endpoint-url``,
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL; the region from AWS_REGION or
AWS_DEFAULT_REGION. Every message that leaves this package goes through
``redact`` so no secret reaches a log line or an error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import s3fs

SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")
_URL_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_extra_secrets: set[str] = set()

#: S3 error codes that mean "nothing else will work either": stop the run, say it once
FATAL_CODES = {
    "InvalidAccessKeyId": "the access key is not known to the endpoint (check AWS_ACCESS_KEY_ID / profile / .env)",
    "SignatureDoesNotMatch": "the secret key does not match the access key (check AWS_SECRET_ACCESS_KEY)",
    "AccessDenied": "access denied (check the key's permissions on this bucket)",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is invalid",
    "NoSuchBucket": "the bucket does not exist",
    "AllAccessDisabled": "all access to this bucket is disabled",
    "403": "access denied (check credentials and the key's permissions)",
    "404": "the bucket does not exist",
}


class S3Error(RuntimeError):
    """A problem phrased for the user in one line, with credentials removed."""

    def __init__(self, message: str):
        super().__init__(redact(message))


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _extra_secrets.add(value)


def redact(text: str) -> str:
    text = _URL_USERINFO.sub(lambda m: m["head"] + "***@", text)
    secrets = {os.environ.get(k) for k in SECRET_ENV} | _extra_secrets
    for s in secrets:
        if s and len(s) >= 4 and s in text:
            text = text.replace(s, "***")
    return text


def load_env(env_file: str | None = None) -> None:
    """Load ``env_file`` (or ./.env when present) without overriding variables already set."""
    from dotenv import load_dotenv

    if env_file is not None:
        if not os.path.isfile(env_file):
            raise S3Error(f"env file {env_file!r} not found")
        load_dotenv(env_file, override=False)
    elif os.path.isfile(".env"):
        load_dotenv(".env", override=False)


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"); refuses what is not one."""
    if not url.startswith("s3://"):
        raise S3Error(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    rest = url[5:].strip("/")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.match(bucket):
        raise S3Error(f"invalid bucket name {bucket!r} in {url!r}")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts) or "\\" in prefix:
        raise S3Error(f"invalid prefix in {url!r}")
    return bucket, "/".join(parts)


def object_key(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


#: defaults of ``S3Options`` (named so callers can reuse them: a slots dataclass hides its defaults)
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class S3Options:
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    #: botocore attempts per request (network hiccups); a dead endpoint fails after these
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: seconds to connect / to wait for each read: an endpoint that accepts and never answers
    #: ends in an error after max_attempts * (connect_timeout + read_timeout), not never
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    def resolved_endpoint(self) -> str | None:
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    def resolved_region(self) -> str | None:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None

    def where(self, url: str) -> str:
        ep = self.resolved_endpoint()
        return redact(f"{url} at {ep}" if ep else url)


def make_fs(opts: S3Options, *, asynchronous: bool = False) -> s3fs.S3FileSystem:
    """A fresh (uncached) S3FileSystem; async ones must be used on one event loop and closed with ``close_fs``."""
    client_kwargs: dict[str, Any] = {}
    region = opts.resolved_region()
    if region:
        client_kwargs["region_name"] = region
    kwargs: dict[str, Any] = {}
    if opts.profile:
        kwargs["profile"] = opts.profile
    fs = s3fs.S3FileSystem(
        endpoint_url=opts.resolved_endpoint(),
        client_kwargs=client_kwargs,
        config_kwargs={
            "retries": {"max_attempts": opts.max_attempts, "mode": "standard"},
            "connect_timeout": opts.connect_timeout,
            "read_timeout": opts.read_timeout,
            # integrity is ours (Content-MD5 on PUT, sha256 metadata verified on GET): no extra CRC pass,
            # and no flexible-checksum headers that some S3-compatible stores refuse
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        },
        asynchronous=asynchronous,
        skip_instance_cache=True,
        **kwargs,
    )
    # botocore's retries above are the only ones: s3fs's own loop (5 more rounds of
    # botocore's attempts, with back-off) would multiply a frozen endpoint's wait by 5
    fs.retries = 1
    return fs


async def close_fs(fs: s3fs.S3FileSystem) -> None:
    client = getattr(fs, "_s3", None)
    if client is not None:
        await client.close()
        fs._s3 = None


def error_code(e: BaseException) -> str | None:
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        code = resp.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def is_connection_error(e: BaseException) -> bool:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return isinstance(e, BotoConnectionError | HTTPClientError | ConnectionError | TimeoutError)


def _is_timeout(e: BaseException) -> bool:
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    return isinstance(e, ReadTimeoutError | ConnectTimeoutError | TimeoutError) or "Timeout" in type(e).__name__


def describe(e: BaseException, where: str) -> str:
    """One line for any failure talking to S3 (never a traceback, never a secret)."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError, ProfileNotFound

    code = error_code(e)
    if code is not None:
        hint = FATAL_CODES.get(code)
        msg = getattr(e, "response", {}).get("Error", {}).get("Message") or ""
        text = f"{where}: {hint}" if hint else f"{where}: {code}: {msg}".rstrip(": ")
    elif isinstance(e, NoCredentialsError | PartialCredentialsError):
        text = (
            f"{where}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or a .env)"
        )
    elif isinstance(e, ProfileNotFound):
        text = f"{where}: {e}"
    elif _is_timeout(e):
        text = f"{where}: the endpoint did not answer in time ({type(e).__name__}: {e})"
    elif is_connection_error(e):
        text = f"{where}: cannot reach the endpoint ({type(e).__name__}: {e})"
    else:
        text = f"{where}: {type(e).__name__}: {e}"
    return redact(text)


def is_fatal(e: BaseException) -> bool:
    """Errors after which every further request would fail the same way."""
    code = error_code(e)
    if code is not None:
        return code in FATAL_CODES
    return is_connection_error(e) or type(e).__name__ in (
        "NoCredentialsError",
        "PartialCredentialsError",
        "ProfileNotFound",
    )


async def check_bucket(client: Any, bucket: str, prefix: str, where: str, *, need_list: bool = True) -> None:
    """One cheap request that turns wrong credentials / a missing bucket into one clear S3Error.

    ``need_list=False`` (restore by computed paths) accepts a key that may read
    objects but not list them: per-object requests will tell.
    """
    try:
        await client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except Exception as e:
        if not need_list and error_code(e) in ("AccessDenied", "403"):
            return
        raise S3Error(describe(e, where)) from None
