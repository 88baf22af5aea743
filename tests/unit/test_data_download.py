"""Data download guards: the GroupLens pin, no https->http redirect, size caps on bodies and zip members.

Each test serves on 127.0.0.1 (an ephemeral port, a thread; well under a second), never the network.
"""

from __future__ import annotations

import datetime
import hashlib
import http.server
import io
import ipaddress
import ssl
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dataset import download, sources
from dataset.download import SourceError, http_get
from dataset.schema import DATASETS

ML100K = DATASETS["ml-100k"]
Route = Callable[[http.server.BaseHTTPRequestHandler], None]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _ml100k_zip(**extra: bytes) -> bytes:
    members = {"ml-100k/u.data": b"1\t1\t5\t881250949\n", "ml-100k/u.item": b"x\n", "ml-100k/u.user": b"y\n"}
    return _zip({**members, **extra})


class _Server:
    """A loopback HTTP(S) server whose paths are answered by the given routes."""

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                routes.get(self.path, _not_found)(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _not_found(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(404)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _body(data: bytes, *, length: bool = True) -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        else:
            handler.close_connection = True  # the body ends when the connection does
        handler.end_headers()
        handler.wfile.write(data)

    return route


def _redirect(location: Callable[[], str]) -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location())
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    servers: list[_Server] = []

    def start(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> _Server:
        servers.append(_Server(routes, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 whose self-signed certificate the client trusts (SSL_CERT_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def test_https_to_http_redirect_is_refused(serve, tls):
    plain = serve({"/ml-100k.zip": _body(b"the body")})
    secure = serve(
        {
            "/ml-100k.zip": _redirect(lambda: f"{plain.url}/ml-100k.zip"),
            "/same.zip": _redirect(lambda: "/ok.zip"),
            "/ok.zip": _body(b"over https"),
        },
        tls,
    )
    # An https -> https redirect (relative Location) is followed; the client trusts the test CA.
    assert http_get(f"{secure.url}/same.zip")[0] == b"over https"
    with pytest.raises(SourceError) as error:
        http_get(f"{secure.url}/ml-100k.zip")
    message = str(error.value)
    assert f"redirected (HTTP 302) to {plain.url}/ml-100k.zip, which is not https" in message
    assert "--source" in message


def test_http_redirects_are_still_followed(serve):
    # Starting on http (a loopback mirror, say) is the user's choice; only a downgrade is refused.
    server = serve({"/a.zip": _redirect(lambda: "/b.zip"), "/b.zip": _body(b"b")})
    assert http_get(f"{server.url}/a.zip")[0] == b"b"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-content-length"])
def test_download_over_the_cap_is_refused(serve, monkeypatch, declared):
    monkeypatch.setenv(download.MAX_DOWNLOAD_MB_ENV, "1")
    server = serve({"/big.zip": _body(b"\0" * (1024 * 1024 + 1), length=declared)})
    with pytest.raises(SourceError) as error:
        http_get(f"{server.url}/big.zip")
    message = str(error.value)
    assert f"the download {server.url}/big.zip" in message and "over the 1,048,576-byte cap" in message
    assert "raise MLOPS_MAX_DOWNLOAD_MB (megabytes, now 1)" in message
    # At the cap exactly, it downloads.
    monkeypatch.setenv(download.MAX_DOWNLOAD_MB_ENV, "2")
    assert len(http_get(f"{server.url}/big.zip")[0]) == 1024 * 1024 + 1


def test_zip_bomb_member_is_refused(monkeypatch):
    monkeypatch.setenv(download.MAX_MEMBER_MB_ENV, "1")
    bomb = _ml100k_zip(**{"ml-100k/u.data": b"\0" * (3 * 1024 * 1024)})
    assert len(bomb) < 20_000  # deflate: 3 MB of zeros in a few kB
    with pytest.raises(SourceError) as error:
        sources.layout_from_archive(ML100K, bomb, "bomb.zip")
    message = str(error.value)
    assert "bomb.zip member ml-100k/u.data (uncompressed) is 3,145,728 bytes" in message
    assert "over the 1,048,576-byte cap" in message and "MLOPS_MAX_ZIP_MEMBER_MB" in message


def test_zip_member_lying_about_its_size_is_still_capped(monkeypatch):
    monkeypatch.setenv(download.MAX_MEMBER_MB_ENV, "1")
    archive = zipfile.ZipFile(io.BytesIO(_ml100k_zip(**{"ml-100k/u.data": b"\0" * (2 * 1024 * 1024)})))
    info = archive.getinfo("ml-100k/u.data")
    with pytest.raises(SourceError, match="over the 1,048,576-byte cap"):
        download.read_capped(archive.open(info), "u.data", download.MAX_MEMBER_MB_ENV, declared=10)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_bad_cap_setting_names_the_value(monkeypatch, value):
    monkeypatch.setenv(download.MAX_DOWNLOAD_MB_ENV, value)
    with pytest.raises(SourceError, match=rf"MLOPS_MAX_DOWNLOAD_MB='{value}' is not a whole number"):
        download.limit_bytes(download.MAX_DOWNLOAD_MB_ENV)


def test_grouplens_archive_must_match_its_pinned_sha256(serve, monkeypatch):
    archive = _ml100k_zip()
    server = serve({"/movielens/ml-100k.zip": _body(archive)})
    digest = hashlib.sha256(archive).hexdigest()
    with pytest.raises(SourceError) as error:
        sources.from_grouplens(ML100K, f"{server.url}/movielens")
    message = str(error.value)
    assert (
        f"has sha256 {digest}, but ml-100k.zip is pinned to {sources.GROUPLENS_ARCHIVES['ml-100k'].sha256}"
        in (message)
    )
    assert "--source" in message
    # The same bytes pass once they are what is pinned.
    monkeypatch.setitem(sources.GROUPLENS_ARCHIVES, "ml-100k", sources.PinnedArchive(digest, "0" * 32))
    raw = sources.from_grouplens(ML100K, f"{server.url}/movielens")
    assert raw.provenance["archive_sha256"] == digest and sorted(raw.files) == ["u.data", "u.item", "u.user"]


def test_pins_are_well_formed_for_every_dataset():
    assert set(sources.GROUPLENS_ARCHIVES) == set(DATASETS)
    for pinned in sources.GROUPLENS_ARCHIVES.values():
        assert len(pinned.sha256) == 64 and int(pinned.sha256, 16) >= 0
        assert len(pinned.md5) == 32 and int(pinned.md5, 16) >= 0
