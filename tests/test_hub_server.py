"""The Hub-compatible test server itself (tests/hub_server.py): the checks it makes and the
faults it injects, with plain HTTP requests (no Hub client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest


def _request(hub, method, path, body=b"", content_type="application/json"):
    request = urllib.request.Request(
        f"{hub.url}{path}", data=body, method=method,
        headers={"Authorization": f"Bearer {hub.write_token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


def test_server_rejects_an_lfs_file_that_was_never_uploaded(hub):
    """The commit endpoint checks LFS objects, so a client that skipped the upload cannot pass."""
    import urllib.error
    import urllib.request

    def post(path, body, content_type="application/json"):
        request = urllib.request.Request(
            f"{hub.url}{path}", data=body, method="POST",
            headers={"Authorization": f"Bearer {hub.write_token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    assert post("/api/repos/create", json.dumps({"name": "raw", "type": "model"}).encode()) == 200
    payload = b"\n".join(json.dumps(line).encode() for line in [
        {"key": "header", "value": {"summary": "bad"}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "0" * 64}},
    ])
    assert post("/api/models/cld-tester/raw/commit/main", payload, "application/x-ndjson") == 422
    assert hub.history("model", "cld-tester/raw") == ["initial commit"]


# ---------------------------------------------------------------------------- offline export
# export_coreset_repos runs in THIS process, with no server, no HF_ENDPOINT and every socket
# connection refused; only the byte-for-byte comparison also pushes (through the client).

_EXPORT_ARGS = dict(
    fraction=0.4, source_dataset="cld-tester/src", license="mit", tags=["demo"],
    eval_results={"accuracy": 0.75},
    method_info={"proxy_model": "tiny BERT", "epochs": 7, "num_snapshots": 7,
                 "query_fraction": 0.1, "query_seed": 3, "command": "cld-hf run --epochs 7"},
)


def test_server_deletes_a_repo_and_answers_404_for_a_missing_one(hub):
    create = json.dumps({"name": "doomed", "type": "dataset"}).encode()
    assert _request(hub, "POST", "/api/repos/create", create)[0] == 200
    delete = json.dumps({"name": "doomed", "type": "dataset"}).encode()
    assert _request(hub, "DELETE", "/api/repos/delete", delete)[0] == 200
    assert ("dataset", "cld-tester/doomed") not in hub.repos
    assert _request(hub, "DELETE", "/api/repos/delete", delete)[0] == 404


def test_faults_answer_an_error_or_drop_the_connection_the_given_number_of_times(hub):
    import http.client

    create = json.dumps({"name": "faulty", "type": "model"}).encode()
    hub.add_fault("POST", r"^/api/repos/create$", status=503, message="maintenance", times=1)
    status, headers = _request(hub, "POST", "/api/repos/create", create)
    assert status == 503 and headers["X-Error-Message"] == "maintenance"
    assert ("model", "cld-tester/faulty") not in hub.repos  # failed before it was applied
    hub.add_fault("POST", r"^/api/repos/create$", drop="before")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        _request(hub, "POST", "/api/repos/create", create)
    assert ("model", "cld-tester/faulty") not in hub.repos
    hub.add_fault("POST", r"^/api/repos/create$", drop="after")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        _request(hub, "POST", "/api/repos/create", create)
    assert ("model", "cld-tester/faulty") in hub.repos  # applied; the answer was lost
    assert _request(hub, "POST", "/api/repos/create", create)[0] == 409  # faults used up
    hub.clear_faults()
    with pytest.raises(ValueError, match="drop == 'sometimes'"):
        hub.add_fault("POST", "x", drop="sometimes")
