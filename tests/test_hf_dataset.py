"""dataset.hf_id: download from a Hugging Face hub once, then reuse the local cache.

The hub is a fake served on 127.0.0.1 (HF_ENDPOINT), implementing what ``snapshot_download`` of a dataset
repo asks in huggingface_hub 1.x: GET /api/datasets/{id}/revision/{rev} (``sha``, ``siblings``),
GET /api/datasets/{id}/tree/{sha}?recursive=True (files with ``size``/``oid``), and HEAD/GET
/datasets/{id}/resolve/{sha}/{file} (ETag, X-Repo-Commit, Content-Length: a plain, non-LFS git file).
Name resolution for any other host fails the test, so nothing can reach the real internet.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bsa.config import SCENARIOS, DatasetConfig
from bsa.data import DatasetError, load

hub_constants = pytest.importorskip("huggingface_hub.constants")

SHA = "5f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"  # the repo's one commit
RO, CS, OS = SCENARIOS
CS_LABEL = "Query A: Rumors-Sub\nQuery B: Ethics and Morality-Sub"
ROWS = [
    ("hf-1", "synthetic query one", "synthetic risk one", RO, "Rumors-Sub"),
    (
        "hf-2",
        "synthetic query two",
        "Query A: synthetic risk two\nQuery B: synthetic risk two b",
        CS,
        CS_LABEL,
    ),
    ("hf-3", "synthetic query three", "synthetic risk three", OS, "Ethics and Morality-Sub"),
]


def bsa_csv() -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([("id", "query", "risk_summary", "dataset_name", "label"), *ROWS])
    return buf.getvalue().encode()


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, repo: str, files: dict[str, bytes] | None) -> None:  # None: the repo does not exist
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repo, self.files = repo, files
        self.log: list[tuple[str, str]] = []  # (method, path); list.append is atomic

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def repo_log(self, part: str = "/") -> list[tuple[str, str]]:
        """Requests about the repo (the client may also ask e.g. /api/agent-harnesses, once a process)."""
        return [r for r in self.log if f"/{self.repo}/" in r[1] and part in r[1]]


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, data: bytes, **headers: str) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        hub, path = self.server, unquote(urlsplit(self.path).path)
        hub.log.append((self.command, path))
        resolve = f"/datasets/{hub.repo}/resolve/{SHA}/"
        if hub.files is None:
            self._send(404, b'{"error":"Repository not found"}', X_Error_Code="RepoNotFound")
        elif path == f"/api/datasets/{hub.repo}/revision/main":
            siblings = [{"rfilename": name} for name in hub.files]
            info = {"id": hub.repo, "sha": SHA, "private": False, "siblings": siblings}
            self._send(200, json.dumps(info).encode(), Content_Type="application/json")
        elif path == f"/api/datasets/{hub.repo}/tree/{SHA}":
            tree: list[dict[str, object]] = [
                {"type": "file", "path": name, "size": len(data), "oid": git_oid(data)}
                for name, data in hub.files.items()
            ]
            dirs = {name.rsplit("/", 1)[0] for name in hub.files if "/" in name}
            tree += [{"type": "directory", "path": d, "oid": git_oid(d.encode())} for d in sorted(dirs)]
            self._send(200, json.dumps(tree).encode(), Content_Type="application/json")
        elif path.startswith(resolve) and path[len(resolve) :] in hub.files:
            data = hub.files[path[len(resolve) :]]  # a plain git file: no LFS redirect, no Xet headers
            self._send(200, data, ETag=f'"{git_oid(data)}"', X_Repo_Commit=SHA, Content_Type="text/plain")
        else:
            self._send(404, b'{"error":"Entry not found"}', X_Error_Code="EntryNotFound")

    do_HEAD = do_GET


@pytest.fixture
def hub_factory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start fake hubs; point huggingface_hub at the latest; fail if any other host is looked up."""
    hubs: list[FakeHub] = []
    outside: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host not in ("127.0.0.1", b"127.0.0.1"):
            outside.append(str(host))
            raise socket.gaierror(f"test: no network beyond 127.0.0.1 ({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE", "HTTP_PROXY",
                "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "hf-home"  # token, stored tokens, agent registry: never the user's ~/.cache
    for name, file in (("HF_TOKEN_PATH", "token"), ("HF_STORED_TOKENS_PATH", "stored_tokens"),
                       ("AGENT_HARNESSES_PATH", "agents.json")):  # fmt: skip
        monkeypatch.setattr(hub_constants, name, str(home / file))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.setenv(var, "5")
        monkeypatch.setattr(hub_constants, var, 5)

    def make(repo: str, files: dict[str, bytes] | None) -> FakeHub:
        hub = FakeHub(repo, files)
        hubs.append(hub)
        threading.Thread(target=hub.serve_forever, daemon=True).start()
        # HF_ENDPOINT is read once, at import, into constants (ENDPOINT and the values derived from it).
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr(hub_constants, "ENDPOINT", hub.endpoint)
        template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(hub_constants, "HF_URL_HOSTS", hub_constants.HF_URL_HOSTS | {"127.0.0.1"})
        return hub

    yield make
    for hub in hubs:
        hub.shutdown()
        hub.server_close()
    assert outside == [], f"tried to reach hosts other than the fake hub: {outside}"


def hf_cfg(repo: str, tmp_path: Path) -> DatasetConfig:
    return DatasetConfig(hf_id=repo, download_dir=str(tmp_path / "hf"))


def test_first_load_downloads_then_cache_serves_online_and_offline(hub_factory, tmp_path, monkeypatch):
    data = bsa_csv()
    hub = hub_factory("org/name", {"README.md": b"# card\n", "data/train.csv": data})
    cfg, cache = hf_cfg("org/name", tmp_path), str(tmp_path / "cache")

    queries, path = load(cfg, cache)
    assert [(q.id, q.scenario, q.categories) for q in queries] == [
        ("hf-1", RO, ("Rumors",)),
        ("hf-2", CS, ("Rumors", "Ethics and Morality")),
        ("hf-3", OS, ("Ethics and Morality",)),
    ]
    assert queries[1].label == CS_LABEL
    assert path.name == "train.csv" and path.read_bytes() == data
    assert path.is_relative_to(tmp_path / "hf" / "datasets--org--name" / "snapshots" / SHA)
    resolve = f"/datasets/org/name/resolve/{SHA}/data/train.csv"
    assert hub.repo_log() == [
        ("GET", "/api/datasets/org/name/revision/main"),
        ("GET", f"/api/datasets/org/name/tree/{SHA}"),
        ("HEAD", resolve),
        ("GET", resolve),
    ]

    before = len(hub.repo_log())
    again, path2 = load(cfg, cache)  # online: the revision is looked up, the file is not fetched again
    assert again == queries and path2 == path
    assert hub.repo_log()[before:] == [("GET", "/api/datasets/org/name/revision/main")]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read once at import, as ENDPOINT
    before = len(hub.log)
    offline, path3 = load(cfg, cache)
    assert offline == queries and path3 == path
    assert hub.log[before:] == []  # not even the revision

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub.shutdown()
    hub.server_close()  # the hub is now unreachable (connection refused): the cache still serves
    assert load(cfg, cache) == (queries, path)


def test_repo_without_data_file(hub_factory, tmp_path):
    hub = hub_factory("org/docs", {"README.md": b"# card\n", "notes.txt": b"not data\n"})
    with pytest.raises(DatasetError) as exc:
        load(hf_cfg("org/docs", tmp_path), str(tmp_path / "cache"))
    assert str(exc.value) == "dataset.hf_id=org/docs: no CSV, JSONL or Parquet file in the dataset"
    assert hub.repo_log("/resolve/") == []  # allow_patterns left nothing to download


def test_missing_repo_is_one_clear_error(hub_factory, tmp_path):
    hub = hub_factory("org/missing", None)
    with pytest.raises(DatasetError) as exc:
        load(hf_cfg("org/missing", tmp_path), str(tmp_path / "cache"))
    msg = str(exc.value)
    assert msg.startswith("dataset.hf_id=org/missing: could not fetch from Hugging Face (")
    assert "dataset.path" in msg
    assert hub.repo_log() == [("GET", "/api/datasets/org/missing/revision/main")]


def test_hf_split_picks_the_train_file(hub_factory, tmp_path):
    lines = bsa_csv().splitlines(keepends=True)
    test_only = b"".join(lines[:2])  # header + the first row: a 1-row "test" split
    hub_factory("org/split", {"data/test.csv": test_only, "data/train.csv": bsa_csv()})
    queries, path = load(hf_cfg("org/split", tmp_path), str(tmp_path / "cache"))
    assert path.name == "train.csv"
    assert [q.id for q in queries] == ["hf-1", "hf-2", "hf-3"]
    test_split = hf_cfg("org/split", tmp_path)
    test_split.hf_split = "test"
    assert [q.id for q in load(test_split, str(tmp_path / "cache"))[0]] == ["hf-1"]
    ambiguous = hf_cfg("org/split", tmp_path)
    ambiguous.hf_split = "validation"
    with pytest.raises(
        DatasetError, match=r"no file for split 'validation' among data/test\.csv, data/train\.csv"
    ):
        load(ambiguous, str(tmp_path / "cache"))
