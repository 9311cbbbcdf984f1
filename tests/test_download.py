"""Downloads against a file server on 127.0.0.1 (no outside network): fresh, resumed, restarted
after a checksum mismatch or a server without Range support, interrupted, and offline errors;
then the dataset provider and the Config fetching a missing dataset end to end."""

import dataclasses
import hashlib
import io
import logging
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import atomic_data
from atomic_data.download import ChecksumMismatchError, DownloadError, RemoteFile, download

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server naming)
        server = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        data = server.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, start = 200, 0
        if rng and server.ranges:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if server.drop_after is not None:  # announce everything, send part, hang up
            self.wfile.write(body[: server.drop_after])
            self.wfile.flush()
            server.drop_after = None
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.ranges, httpd.drop_after = {}, [], True, None
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def remote_for(server, data=PAYLOAD, path="/files/data.bin", **checks):
    server.files[path] = data
    checks.setdefault("md5", hashlib.md5(data).hexdigest())
    checks.setdefault("sha256", hashlib.sha256(data).hexdigest())
    return RemoteFile(url=server.url + path, filename=Path(path).name, **checks)


def test_fresh_download_is_verified(server, tmp_path):
    remote = remote_for(server)
    dest = download(remote, tmp_path / "raw" / "data.bin", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "raw" / "data.bin.part").exists()
    assert server.requests == [("/files/data.bin", None)]
    # a verified file on disk is reused without any request
    download(remote, dest, progress=False)
    assert len(server.requests) == 1


def test_partial_download_resumes_with_range(server, tmp_path):
    remote = remote_for(server)
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:40000])
    download(remote, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/files/data.bin", "bytes=40000-")]


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path):
    remote = remote_for(server)
    dest = tmp_path / "data.bin"
    server.drop_after = 30000
    with pytest.raises(DownloadError) as info:
        download(remote, dest, progress=False, timeout=10)
    message = str(info.value)
    assert remote.url in message and str(dest) in message and "resumes" in message
    part = tmp_path / "data.bin.part"
    assert part.stat().st_size == 30000 and not dest.exists()
    download(remote, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/files/data.bin", "bytes=30000-")


def test_stale_part_failing_checksum_restarts_from_zero(server, tmp_path, caplog):
    remote = remote_for(server)
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"\xff" * 50000)  # bytes of some other file
    with caplog.at_level(logging.WARNING, logger="atomic_data.download"):
        download(remote, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/files/data.bin", "bytes=50000-"), ("/files/data.bin", None)]
    assert "restarting from byte 0" in caplog.text


def test_server_without_range_support_restarts(server, tmp_path):
    server.ranges = False
    remote = remote_for(server)
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    download(remote, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD  # not 1000 bytes + the whole file


def test_complete_part_is_accepted_after_416(server, tmp_path):
    remote = remote_for(server)
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    assert download(remote, tmp_path / "data.bin", progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/files/data.bin", f"bytes={len(PAYLOAD)}-")]


def test_part_longer_than_the_file_restarts(server, tmp_path):
    remote = remote_for(server, md5=None, sha256=None)  # even without a checksum
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD + b"stale tail")
    assert download(remote, tmp_path / "data.bin", progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/files/data.bin", f"bytes={len(PAYLOAD) + 10}-"), ("/files/data.bin", None)]


def test_checksum_mismatch_on_fresh_download_fails_cleanly(server, tmp_path):
    remote = remote_for(server, md5="0" * 32, sha256=None)
    dest = tmp_path / "data.bin"
    with pytest.raises(ChecksumMismatchError, match="md5 is"):
        download(remote, dest, progress=False)
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()


def test_corrupt_existing_file_is_downloaded_again(server, tmp_path):
    remote = remote_for(server)
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"corrupt")
    download(remote, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_no_checksum_logs_not_verified(server, tmp_path, caplog):
    remote = remote_for(server, md5=None, sha256=None)
    with caplog.at_level(logging.WARNING, logger="atomic_data.download"):
        download(remote, tmp_path / "data.bin", progress=False)
    assert "NOT verified" in caplog.text


def test_offline_error_names_url_and_destination(tmp_path):
    remote = RemoteFile(url=f"http://127.0.0.1:{closed_port()}/datasets/ml-1m.zip", filename="ml-1m.zip",
                        homepage="https://grouplens.org/datasets/movielens/1m/")
    dest = tmp_path / "ml-1m" / "raw" / "ml-1m.zip"
    with pytest.raises(DownloadError) as info:
        download(remote, dest, progress=False, timeout=5)
    message = str(info.value)
    assert remote.url in message and str(dest) in message and "curl" in message
    assert "https://grouplens.org/datasets/movielens/1m/" in message


def test_offline_mode_makes_no_request(server, tmp_path, monkeypatch):
    remote = remote_for(server)
    monkeypatch.setenv("RECBOLE_LLM_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline mode"):
        download(remote, tmp_path / "data.bin", progress=False)
    assert server.requests == []


def test_http_error_is_reported_with_instructions(server, tmp_path):
    remote = RemoteFile(url=server.url + "/missing.zip", filename="missing.zip")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(remote, tmp_path / "missing.zip", progress=False)


# --------------------------------------------------------------------------------------------
# Providers: ml-1m fetched from the loopback server, converted, cached
# --------------------------------------------------------------------------------------------
def ml1m_zip_bytes():
    """A tiny ml-1m.zip in GroupLens' layout (the converter tests cover the content)."""
    movies = [f"{m}::Movie {m} (199{m})::Drama|Comedy" for m in range(1, 9)]
    users = [f"{u}::F::25::{u}::1000{u}" for u in range(1, 7)]
    ratings = [f"{u}::{m}::{1 + (u + m) % 5}::{978300000 + 10 * u + m}" for u in range(1, 7) for m in range(1, 9) if (u + m) % 4]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, lines in (("movies.dat", movies), ("users.dat", users), ("ratings.dat", ratings)):
            zf.writestr(f"ml-1m/{name}", ("\n".join(lines) + "\n").encode("latin-1"))
    return buffer.getvalue()


def loopback_ml1m_provider(base_url, data=None):
    from recbole_llm.data.providers import DatasetProvider

    spec = atomic_data.get_spec("ml-1m")
    official = spec.files[0]
    data = data if data is not None else ml1m_zip_bytes()
    remote = dataclasses.replace(official, url=f"{base_url}/datasets/movielens/ml-1m.zip",
                                 md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest())
    return DatasetProvider(name="ml-1m", description=spec.description, spec=dataclasses.replace(spec, files=(remote,)))


def test_provider_downloads_converts_and_caches(server, tmp_path):
    data = ml1m_zip_bytes()
    server.files["/datasets/movielens/ml-1m.zip"] = data
    provider = loopback_ml1m_provider(server.url, data)
    folder = provider.ensure(tmp_path)
    assert folder == tmp_path / "ml-1m"
    assert {p.name for p in folder.iterdir()} == {"ml-1m.inter", "ml-1m.item", "ml-1m.user", "raw"}
    assert (folder / "raw" / "ml-1m.zip").read_bytes() == data
    assert len(server.requests) == 1
    assert provider.ensure(tmp_path) == folder and len(server.requests) == 1  # cached


def test_provider_offline_error_is_actionable(tmp_path):
    from recbole_llm.data.providers import DatasetUnavailableError

    provider = loopback_ml1m_provider(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(DatasetUnavailableError) as info:
        provider.ensure(tmp_path)
    message = str(info.value)
    assert "ml-1m.zip" in message and str(tmp_path / "ml-1m" / "raw" / "ml-1m.zip") in message
    assert "python -m atomic_data convert ml-1m" in message
    assert isinstance(info.value, RuntimeError)
    assert not (tmp_path / "ml-1m" / "ml-1m.inter").exists()


def test_config_fetches_missing_dataset_through_provider(server, tmp_path, monkeypatch):
    """``--dataset=ml-1m`` with no files on disk: the Config downloads, converts, then loads."""
    from recbole.data import create_dataset

    from recbole_llm.config import Config
    from recbole_llm.plugins import get_registry

    server.files["/datasets/movielens/ml-1m.zip"] = ml1m_zip_bytes()
    monkeypatch.setitem(get_registry().datasets, "ml-1m", loopback_ml1m_provider(server.url))
    config = Config(model="BPR", dataset="ml-1m", config_dict={"data_path": str(tmp_path), "show_progress": False})
    assert Path(config["data_path"]) == tmp_path / "ml-1m"
    dataset = create_dataset(config)
    assert dataset.item_num == 9 and "movie_title" in dataset.item_feat.columns


def test_builtin_providers_are_registered():
    from recbole_llm.data.providers import BUILTIN_DATASETS, DatasetProvider
    from recbole_llm.plugins import build_registry

    registry = build_registry(load_entry_points=False)
    assert set(BUILTIN_DATASETS) <= set(registry.datasets)
    for name in BUILTIN_DATASETS:
        provider = registry.datasets[name]
        assert isinstance(provider, DatasetProvider) and provider.description
        assert provider.property_file and Path(provider.property_file).name == f"{name}.yaml"
