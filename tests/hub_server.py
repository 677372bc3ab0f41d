"""A small Hugging Face Hub-compatible HTTP server for tests: real clients, no network.

It implements the part of the Hub's HTTP API that ``huggingface_hub`` (``HfApi``,
``hf_hub_download``, ``HfFileSystem``), ``datasets.load_dataset`` and ``transformers``'
``from_pretrained`` call to create repos, commit files through the classic LFS protocol
(``HF_HUB_DISABLE_XET=1``) and read them back. The installed ``huggingface_hub`` sources are the
specification: ``hf_api.py`` (routes and JSON shapes), ``_commit_api.py`` (preupload and the
ndjson commit payload), ``lfs.py`` (LFS batch + PUT) and ``file_download.py`` (resolve headers).

Routes (``{type}`` is ``models``, ``datasets`` or ``spaces``; URL prefix ``""`` for models and
``datasets/`` for datasets)::

    GET  /api/whoami-v2                                   token check
    POST /api/repos/create                                new repo (initial commit: .gitattributes)
    DELETE /api/repos/delete                              delete a repo (404 when missing)
    POST /api/validate-yaml                               README front matter must be YAML mapping
    GET  /api/{type}/{ns}/{name}[/revision/{rev}]         repo info: sha, siblings, cardData
    POST /api/{type}/{ns}/{name}/preupload/{rev}          "lfs" or "regular" for each file
    POST /api/{type}/{ns}/{name}/commit/{rev}             ndjson: header, file, lfsFile, deleted*
    GET  /api/{type}/{ns}/{name}/tree/{rev}[/{path}]      ?recursive=&expand=
    POST /api/{type}/{ns}/{name}/paths-info/{rev}         form: paths=..., expand=
    GET  /api/{type}/{ns}/{name}/refs                     branches, tags, pull requests
    GET  /api/{type}/{ns}/{name}/commits/{rev}            history, newest first
    POST /api/{type}/{ns}/{name}/branch/{branch}          create a branch (409 if it exists)
    DELETE /api/{type}/{ns}/{name}/branch/{branch}        delete a branch (not main)
    POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch  LFS batch: upload hrefs
    PUT  /lfs-upload/{sha256}                             LFS object body (size + sha256 checked)
    GET|HEAD /{prefix}{ns}/{name}/resolve/{rev}/{path}    file bytes, Range, X-Repo-Commit, ETag

Storage lives under ``root``: file contents by sha256 in ``objects/``, and for each repo a JSON
document with its refs and its commits (each commit has a parent, a message and the full tree),
rewritten atomically after every change. A commit is applied all at once or not at all.

Authentication follows the Hub: an unknown ``Authorization: Bearer`` token gets 401 "Invalid
credentials in Authorization header" on every route; writing needs a known token with the
``write`` role (401 without a token, 403 for a read token or a foreign namespace); a private repo
is invisible (404 ``RepoNotFound``) to anyone but its owner.

Switches for failure tests: ``server.fail_next_commits = n`` answers the next ``n`` commit
requests with HTTP 500 before touching the repo; ``server.add_fault(method, path, ...)`` makes
the next ``times`` requests whose path matches a regex fail with an HTTP status, or drop the
connection without an answer, before (``drop="before"``) or after (``drop="after"``) the
request is applied; ``server.clear_faults()`` removes them. ``server.requests`` logs every
answered request.

Example
-------
>>> import tempfile
>>> server = HubServer(tempfile.mkdtemp()).start()
>>> env = {"HF_ENDPOINT": server.url, "HF_TOKEN": server.write_token}  # for the client process
>>> env["HF_ENDPOINT"].startswith("http://127.0.0.1:")
True
>>> server.stop()
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = ["HubServer"]

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_EXTENSIONS = (".parquet", ".arrow", ".safetensors", ".bin", ".pt", ".pth", ".npy", ".npz",
                  ".h5", ".onnx", ".msgpack", ".zip", ".gz", ".tar", ".png", ".jpg")
GITATTRIBUTES = b"".join(f"*{ext} filter=lfs diff=lfs merge=lfs -text\n".encode()
                         for ext in LFS_EXTENSIONS)


def git_blob_oid(data: bytes) -> str:
    """The git object id (sha1 of ``blob <size>\\0<data>``) that the Hub reports for a file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    spec = "https://git-lfs.github.com/spec/v1"
    return f"version {spec}\noid sha256:{sha256}\nsize {size}\n".encode()


def _commit_ref(commit: dict) -> dict:
    """The ``lastCommit`` object of a tree entry."""
    return {"id": commit["id"], "title": commit["title"], "date": commit["date"]}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class HubError(Exception):
    """An HTTP error answer, with the Hub's ``X-Error-Code`` / ``X-Error-Message`` headers."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class Entry:
    """One file of a tree: its content address, size and how git stores it."""

    sha256: str
    size: int
    lfs: bool
    oid: str  # git blob id: of the content (regular) or of the LFS pointer (lfs)

    def as_json(self, path: str, commit: dict | None = None) -> dict:
        out = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.lfs:
            out["lfs"] = {"oid": self.sha256, "size": self.size,
                          "pointerSize": len(lfs_pointer(self.sha256, self.size))}
        if commit is not None:
            out["lastCommit"] = _commit_ref(commit)
        return out


@dataclass
class Repo:
    """A repo: refs (branch or ``refs/pr/N`` -> commit id) and every commit with its full tree."""

    type: str
    id: str
    private: bool
    created: str = field(default_factory=_now)
    refs: dict = field(default_factory=dict)
    commits: dict = field(default_factory=dict)  # id -> {id, parent, title, message, date, tree}
    pull_requests: int = 0

    def resolve(self, revision: str) -> dict:
        commit_id = self.refs.get(revision, revision)
        if commit_id not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[commit_id]

    def history(self, revision: str) -> list[dict]:
        commit, out = self.resolve(revision), []
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit["parent"]) if commit["parent"] else None
        return out

    def to_json(self) -> dict:
        commits = {
            cid: {**c, "tree": {p: vars(e) for p, e in c["tree"].items()}}
            for cid, c in self.commits.items()
        }
        return {"type": self.type, "id": self.id, "private": self.private, "created": self.created,
                "refs": self.refs, "commits": commits, "pull_requests": self.pull_requests}


@dataclass
class Fault:
    """A failure the server injects into the next ``times`` matching requests.

    ``path`` is a regex searched in the request path (query string excluded). ``status``
    answers with that HTTP error (``X-Error-Message: message``); ``drop="before"`` closes the
    connection without an answer and without applying the request, ``drop="after"`` applies it
    first (the client never learns that it succeeded).
    """

    method: str
    path: str
    status: int | None = 500
    drop: str | None = None
    times: int = 1
    message: str = "Internal Error: the test server was told to fail this request"
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


class HubServer:
    """The server: storage, tokens and the failure switches. See the module docstring.

    Parameters
    ----------
    root : path
        Empty directory for the stored objects and repos.
    user : str, default "cld-tester"
        The account the tokens belong to; it may write to its own namespace only.
    """

    def __init__(self, root, *, user: str = "cld-tester"):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.user = user
        self.write_token = "hf_cldtest_write_0123456789"
        self.read_token = "hf_cldtest_read_0123456789"
        self.tokens = {self.write_token: "write", self.read_token: "read"}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.fail_next_commits = 0
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), for debugging
        self.lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> HubServer:
        """Listen on 127.0.0.1 at a free port, in a daemon thread."""
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------- failure switches
    def add_fault(self, method: str, path: str, *, status: int | None = 500,
                  drop: str | None = None, times: int = 1, message: str | None = None) -> Fault:
        """Fail the next ``times`` requests ``method`` whose path matches the regex ``path``."""
        if drop not in (None, "before", "after"):
            raise ValueError(f"drop == {drop!r}, must be None, 'before' or 'after'.")
        fault = Fault(method, path, status=None if drop else status, drop=drop, times=times,
                      **({"message": message} if message else {}))
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self.fail_next_commits = 0

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    fault.hits += 1
                    return fault
        return None

    # ---------------------------------------------------------------- inspection (for asserts)
    def repo(self, repo_type: str, repo_id: str) -> Repo:
        with self.lock:
            return self.repos[(repo_type, repo_id)]

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """``{path: content}`` of a revision."""
        with self.lock:
            tree = self.repo(repo_type, repo_id).resolve(revision)["tree"]
            return {p: self._read_object(e.sha256) for p, e in tree.items()}

    def history(self, repo_type: str, repo_id: str, revision: str = "main") -> list[str]:
        """Commit titles of a revision, newest first."""
        with self.lock:
            return [c["title"] for c in self.repo(repo_type, repo_id).history(revision)]

    # ---------------------------------------------------------------- storage
    def _object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256

    def _read_object(self, sha256: str) -> bytes:
        return self._object_path(sha256).read_bytes()

    def _write_object(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self._object_path(sha)
        if not path.exists():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha

    def _save(self, repo: Repo) -> None:
        path = self.root / "repos" / repo.type / f"{repo.id.replace('/', '--')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo.to_json(), indent=1))
        os.replace(tmp, path)

    def _add_commit(self, repo: Repo, ref: str, parent: str | None, tree: dict, title: str,
                    message: str = "") -> dict:
        date = _now()
        body = json.dumps({"parent": parent, "title": title, "message": message, "date": date,
                           "tree": {p: e.oid for p, e in sorted(tree.items())}}).encode()
        commit_id = hashlib.sha1(body + os.urandom(8)).hexdigest()
        commit = {"id": commit_id, "parent": parent, "title": title, "message": message,
                  "date": date, "tree": tree}
        repo.commits[commit_id] = commit
        repo.refs[ref] = commit_id
        self._save(repo)
        return commit


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to a ``_route_*`` method; ``HubError`` becomes a JSON error answer."""

    hub: HubServer  # set on the subclass made by HubServer.start
    protocol_version = "HTTP/1.1"
    server_version = "cld-hf-test-hub/1"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # ---------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        if getattr(self, "_drop_answer", False):  # applied, but the answer is lost
            self.close_connection = True
            self.hub.requests.append((self.command, self.path, 0))
            return
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.hub.requests.append((self.command, self.path, status))

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HubError) -> None:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json({"error": err.message, **err.extra}, err.status, headers)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self._drop_answer = False
        try:
            body = self._body()
            fault = self.hub._take_fault(self.command, url.path)
            if fault is not None and fault.drop == "before":
                self.close_connection = True  # no answer at all: the client sees a drop
                self.hub.requests.append((self.command, self.path, 0))
                return
            if fault is not None and fault.drop == "after":
                self._drop_answer = True
            elif fault is not None:
                raise HubError(fault.status, fault.message)
            self.user, self.role = self._authenticate()
            parts = url.path.strip("/").split("/")  # still percent-encoded: a rev may hold %2F
            handled = self._route(parts, body)
            if not handled:
                raise HubError(404, f"No route for {self.command} {url.path}", "RouteNotFound")
        except HubError as err:
            self._error(err)
        except Exception as err:  # a bug in this server: answer 500, with the reason
            self._error(HubError(500, f"test server: {type(err).__name__}: {err}"))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _authenticate(self) -> tuple[str | None, str | None]:
        auth = self.headers.get("Authorization")
        if not auth:
            return None, None
        token = auth.split(" ", 1)[-1].strip()
        if token not in self.hub.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.user, self.hub.tokens[token]

    def _require_write(self, namespace: str) -> None:
        if self.user is None:
            raise HubError(401, "You must be authenticated to access this resource: pass a token.")
        if self.role != "write":
            raise HubError(403, "This token has read access only; use a token with write access.")
        if namespace != self.user:
            raise HubError(403, f"You don't have the rights to write to {namespace!r}.")

    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.user != repo_id.split("/")[0]):
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    # ---------------------------------------------------------------- routing
    def _route(self, parts: list[str], body: bytes) -> bool:
        method = self.command
        with self.hub.lock:
            if parts[0] == "api":
                return self._route_api(method, parts[1:], body)
            if parts[0] == "lfs-upload" and method == "PUT" and len(parts) == 2:
                return self._route_lfs_put(parts[1], body)
            repo_type = "model"
            if parts[0] in ("datasets", "spaces"):
                repo_type, parts = REPO_TYPES[parts[0]], parts[1:]
            is_batch = parts[2:] == ["info", "lfs", "objects", "batch"]
            if len(parts) == 6 and parts[1].endswith(".git") and is_batch and method == "POST":
                return self._route_lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}", body)
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                path = "/".join(unquote(p) for p in parts[4:])
                repo_id, revision = f"{parts[0]}/{parts[1]}", unquote(parts[3])
                return self._route_resolve(repo_type, repo_id, revision, path)
        return False

    def _route_api(self, method: str, parts: list[str], body: bytes) -> bool:
        if parts == ["whoami-v2"] and method == "GET":
            if self.user is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            token = {"displayName": "test", "role": self.role}
            self._json({"type": "user", "id": "0" * 24, "name": self.user, "fullname": "CLD Tester",
                        "orgs": [], "auth": {"type": "access_token", "accessToken": token}})
            return True
        if parts == ["repos", "create"] and method == "POST":
            return self._route_create(json.loads(body or b"{}"))
        if parts == ["repos", "delete"] and method == "DELETE":
            return self._route_delete(json.loads(body or b"{}"))
        if parts == ["validate-yaml"] and method == "POST":
            return self._route_validate_yaml(json.loads(body or b"{}"))
        if len(parts) < 3 or parts[0] not in REPO_TYPES:
            return False
        repo_type, repo_id, rest = REPO_TYPES[parts[0]], f"{parts[1]}/{parts[2]}", parts[3:]
        repo = self._get_repo(repo_type, repo_id)
        if method == "GET" and (not rest or (rest[0] == "revision" and len(rest) == 2)):
            return self._route_info(repo, unquote(rest[1]) if rest else "main")
        if not rest:
            return False
        action, args = rest[0], [unquote(p) for p in rest[1:]]
        if action == "preupload" and method == "POST" and len(args) == 1:
            return self._route_preupload(repo, args[0], json.loads(body))
        if action == "commit" and method == "POST" and len(args) == 1:
            return self._route_commit(repo, args[0], body)
        if action == "tree" and method == "GET" and args:
            return self._route_tree(repo, args[0], "/".join(args[1:]))
        if action == "paths-info" and method == "POST" and len(args) == 1:
            return self._route_paths_info(repo, args[0], body)
        if action == "refs" and method == "GET" and not args:
            return self._route_refs(repo)
        if action == "commits" and method == "GET" and len(args) == 1:
            return self._route_commits(repo, args[0])
        if action == "branch" and method == "POST" and len(args) == 1:
            return self._route_branch(repo, args[0], json.loads(body or b"{}"))
        if action == "branch" and method == "DELETE" and len(args) == 1:
            return self._route_delete_branch(repo, args[0])
        return False

    # ---------------------------------------------------------------- repos
    def _route_create(self, payload: dict) -> bool:
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or self.user or ""
        self._require_write(namespace)
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.hub.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = Repo(type=repo_type, id=repo_id, private=private)
        sha = self.hub._write_object(GITATTRIBUTES)
        entry = Entry(sha, len(GITATTRIBUTES), False, git_blob_oid(GITATTRIBUTES))
        tree = {".gitattributes": entry}
        self.hub._add_commit(repo, "main", None, tree, "initial commit")
        self.hub.repos[(repo_type, repo_id)] = repo
        self._json({"url": url, "name": repo_id, "id": "1" * 24})
        return True

    def _route_delete(self, payload: dict) -> bool:
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or self.user or ""
        self._require_write(namespace)
        repo_id = f"{namespace}/{payload['name']}"
        self._get_repo(repo_type, repo_id)  # 404 when missing (or private to someone else)
        del self.hub.repos[(repo_type, repo_id)]
        (self.hub.root / "repos" / repo_type / f"{repo_id.replace('/', '--')}.json").unlink(
            missing_ok=True)
        self._json({})
        return True

    def _route_validate_yaml(self, payload: dict) -> bool:
        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.S)
        errors = []
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as err:
                errors.append({"message": f"invalid YAML: {err}"})
        self._json({"errors": errors, "warnings": []}, 400 if errors else 200)
        return True

    def _card_data(self, tree: dict) -> dict | None:
        if "README.md" not in tree:
            return None
        text = self.hub._read_object(tree["README.md"].sha256).decode()
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.S)
        return yaml.safe_load(match.group(1)) if match else None

    def _route_info(self, repo: Repo, revision: str) -> bool:
        commit = repo.resolve(revision)
        tree = commit["tree"]
        siblings = []
        for path, entry in sorted(tree.items()):
            sib = {"rfilename": path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sib["lfs"] = {"size": entry.size, "sha256": entry.sha256,
                              "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
            siblings.append(sib)
        self._json({"_id": "1" * 24, "id": repo.id, "author": repo.id.split("/")[0],
                    "sha": commit["id"], "lastModified": commit["date"], "createdAt": repo.created,
                    "private": repo.private, "disabled": False, "gated": False, "downloads": 0,
                    "likes": 0, "tags": [], "cardData": self._card_data(tree),
                    "siblings": siblings})
        return True

    def _route_refs(self, repo: Repo) -> bool:
        def ref(name):
            full = name if name.startswith("refs/") else f"refs/heads/{name}"
            return {"name": name, "ref": full, "targetCommit": repo.refs[name]}

        self._json({"branches": [ref(n) for n in repo.refs if not n.startswith("refs/pr/")],
                    "converts": [], "tags": [],
                    "pullRequests": [ref(n) for n in repo.refs if n.startswith("refs/pr/")]})
        return True

    def _route_commits(self, repo: Repo, revision: str) -> bool:
        self._json([{"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                     "authors": [{"user": self.hub.user}]} for c in repo.history(revision)])
        return True

    def _route_branch(self, repo: Repo, branch: str, payload: dict) -> bool:
        self._require_write(repo.id.split("/")[0])
        if branch in repo.refs:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        repo.refs[branch] = repo.resolve(payload.get("startingPoint") or "main")["id"]
        self.hub._save(repo)
        self._json({})
        return True

    def _route_delete_branch(self, repo: Repo, branch: str) -> bool:
        self._require_write(repo.id.split("/")[0])
        if branch == "main":
            raise HubError(403, "Cannot delete the main branch")
        if branch not in repo.refs:
            raise HubError(404, f"Branch {branch} not found", "RevisionNotFound")
        del repo.refs[branch]
        self.hub._save(repo)
        self._json({})
        return True

    # ---------------------------------------------------------------- upload
    def _route_preupload(self, repo: Repo, revision: str, payload: dict) -> bool:
        self._require_write(repo.id.split("/")[0])
        tree = repo.resolve(revision)["tree"] if revision in repo.refs else {}
        files = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith(LFS_EXTENSIONS) or b"\0" in sample or f["size"] > 10 << 20
            existing = tree.get(f["path"])
            oid = None
            if existing is not None:  # what the client compares with its _local_oid
                oid = existing.sha256 if existing.lfs else existing.oid
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                          "shouldIgnore": False, "oid": oid})
        self._json({"files": files, "commitOid": repo.refs.get(revision)})
        return True

    def _route_lfs_batch(self, repo_type: str, repo_id: str, body: bytes) -> bool:
        repo = self._get_repo(repo_type, repo_id)
        self._require_write(repo.id.split("/")[0])
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is implemented")
        objects = []
        for obj in payload["objects"]:
            out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.hub._object_path(obj["oid"]).exists():
                out["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}"}}
            objects.append(out)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")
        return True

    def _route_lfs_put(self, oid: str, body: bytes) -> bool:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"sha256 of the uploaded body does not match the object id {oid}")
        self.hub._write_object(body)
        self._json({})
        return True

    def _route_commit(self, repo: Repo, revision: str, body: bytes) -> bool:
        self._require_write(repo.id.split("/")[0])
        if self.hub.fail_next_commits > 0:
            self.hub.fail_next_commits -= 1
            raise HubError(500, "Internal Error: the test server was told to fail this commit")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = self.query.get("create_pr", ["0"])[0] in ("1", "true")
        base = repo.resolve(revision)
        if header.get("parentCommit") and header["parentCommit"] != base["id"]:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(base["tree"])
        for line in lines[1:]:  # validate and apply to a copy: all or nothing
            key, value = line["key"], line["value"]
            if key == "file":
                data = base64.b64decode(value["content"])
                tree[value["path"]] = Entry(self.hub._write_object(data), len(data), False,
                                            git_blob_oid(data))
            elif key == "lfsFile":
                path = self.hub._object_path(value["oid"])
                if not path.exists():
                    raise HubError(422, f"LFS object {value['oid']} of {value['path']} was "
                                        f"never uploaded")
                size = path.stat().st_size
                tree[value["path"]] = Entry(value["oid"], size, True,
                                            git_blob_oid(lfs_pointer(value["oid"], size)))
            elif key == "deletedFile":
                if value["path"] not in tree:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del tree[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in tree if p.startswith(prefix)]:
                    del tree[path]
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        if create_pr:
            repo.pull_requests += 1
            ref = f"refs/pr/{repo.pull_requests}"
        elif revision in repo.refs:
            ref = revision
        else:
            raise HubError(400, f"Cannot commit to {revision!r}: not a branch", "RevisionNotFound")
        commit = self.hub._add_commit(repo, ref, base["id"], tree, header.get("summary", ""),
                                      header.get("description", ""))
        url = f"{self.hub.url}/{URL_PREFIX[repo.type]}{repo.id}"
        out = {"commitUrl": f"{url}/commit/{commit['id']}", "commitOid": commit["id"],
               "success": True}
        if create_pr:
            out["pullRequestUrl"] = f"{url}/discussions/{repo.pull_requests}"
        self._json(out)
        return True

    # ---------------------------------------------------------------- download
    def _last_commit_of(self, repo: Repo, commit: dict, path: str) -> dict:
        """The newest commit of the history that changed ``path`` (a file or a folder)."""
        def snapshot(c):
            return {p: e.oid for p, e in c["tree"].items() if p == path or p.startswith(path + "/")}

        history = repo.history(commit["id"])
        for newer, older in zip(history, history[1:]):
            if snapshot(newer) != snapshot(older):
                return newer
        return history[-1]

    def _listing(self, repo: Repo, commit: dict, paths, expand: bool) -> list:
        tree = commit["tree"]
        out = []
        for path in paths:
            if path in tree:
                last = self._last_commit_of(repo, commit, path) if expand else None
                out.append(tree[path].as_json(path, last))
            elif any(p.startswith(path + "/") for p in tree):
                folder = {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(),
                          "size": 0, "path": path}
                if expand:
                    last = self._last_commit_of(repo, commit, path)
                    folder["lastCommit"] = _commit_ref(last)
                out.append(folder)
        return out

    def _children(self, tree: dict, folder: str, recursive: bool) -> list[str]:
        prefix = folder.rstrip("/") + "/" if folder else ""
        names = set()
        for path in tree:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            if recursive:
                names.update(prefix + "/".join(rest[:i]) for i in range(1, len(rest) + 1))
            else:
                names.add(prefix + rest[0])
        return sorted(names)

    def _route_tree(self, repo: Repo, revision: str, folder: str) -> bool:
        commit = repo.resolve(revision)
        if folder and folder in commit["tree"]:
            raise HubError(400, f"{folder} is a file, not a folder")
        children = self._children(commit["tree"], folder, self._flag("recursive"))
        if folder and not children:
            raise HubError(404, f"Folder {folder} does not exist at {revision}", "EntryNotFound")
        self._json(self._listing(repo, commit, children, self._flag("expand")))
        return True

    def _flag(self, name: str, query: dict | None = None) -> bool:
        value = (query or self.query).get(name, ["false"])[0]
        return value.lower() in ("1", "true")

    def _route_paths_info(self, repo: Repo, revision: str, body: bytes) -> bool:
        commit = repo.resolve(revision)
        form = parse_qs(body.decode())
        paths = [p.strip("/") for p in form.get("paths", [])]
        self._json(self._listing(repo, commit, paths, self._flag("expand", form)))
        return True

    def _route_resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> bool:
        repo = self._get_repo(repo_type, repo_id)
        commit = repo.resolve(revision)
        entry = commit["tree"].get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = self.hub._read_object(entry.sha256)
        etag = entry.sha256 if entry.lfs else entry.oid
        headers = {"X-Repo-Commit": commit["id"], "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry.size)})
        status, rng = 200, self.headers.get("Range")
        if rng and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not match or (not match.group(1) and not match.group(2)):
                raise HubError(416, f"Bad Range header {rng!r}")
            start_s, end_s = match.groups()
            if start_s:
                last = len(data) - 1
                start, end = int(start_s), min(int(end_s) if end_s else last, last)
            else:
                start, end = max(len(data) - int(end_s), 0), len(data) - 1
            if start >= len(data) and len(data) > 0:
                headers["Content-Range"] = f"bytes */{len(data)}"
                raise HubError(416, "Requested range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")
        return True
