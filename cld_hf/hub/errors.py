"""The errors of a push: one :class:`HubPushError` family, each message one line.

Every failure of the Hub calls in :func:`~cld_hf.hub.push_coreset_to_hub` (a refused or missing
token, no network, offline mode, a dropped connection, an LFS upload that failed, a server
error, a commit the Hub refused) becomes one of these, with a message that names the cause, the
state the repos are left in and the retry; the original exception stays as ``__cause__``.
:func:`hub_error` makes them from whatever the client raised.
"""

from __future__ import annotations

import importlib
import re

__all__ = ["HubPushError", "HubAuthError", "HubNetworkError", "HubServerError",
           "HubCommitRefusedError", "hub_error"]

AUTH_FIX = "Pass token='hf_...' with write access, run `hf auth login`, or set HF_TOKEN."


class HubPushError(RuntimeError):
    """A push the Hub refused or failed: the message says which repo, why, in what state the
    repos are, and what to do.

    Attributes
    ----------
    repo_id : str or None
        The repo the failing step worked on.
    cause : str
        The cause in a few words, e.g. ``"HTTP 500: Internal Error"``.
    state : str
        What this call left on the Hub (``""`` when nothing is known beyond the message).

    Examples
    --------
    >>> err = HubServerError("The Hub failed (HTTP 500).", repo_id="me/c", cause="HTTP 500")
    >>> isinstance(err, HubPushError), err.repo_id, str(err)
    (True, 'me/c', 'The Hub failed (HTTP 500).')
    """

    def __init__(self, message: str, *, repo_id: str | None = None, cause: str = "",
                 state: str = ""):
        super().__init__(" ".join(str(message).split()))  # one line, always
        self.repo_id, self.cause, self.state = repo_id, cause, state


class HubAuthError(HubPushError):
    """No token, or the Hub refused it (HTTP 401), or it may not write there (HTTP 403).

    Examples
    --------
    >>> issubclass(HubAuthError, HubPushError)
    True
    """


class HubNetworkError(HubPushError):
    """The Hub could not be reached or the connection dropped (DNS, refused, timeout,
    ``HF_HUB_OFFLINE=1``).

    Examples
    --------
    >>> issubclass(HubNetworkError, HubPushError)
    True
    """


class HubServerError(HubPushError):
    """The Hub (or its file storage) answered with an HTTP 5xx error.

    Examples
    --------
    >>> issubclass(HubServerError, HubPushError)
    True
    """


class HubCommitRefusedError(HubPushError):
    """The Hub refused a request (HTTP 4xx other than 401/403), e.g. a commit whose parent moved
    (412) or an upload the storage rejected.

    Examples
    --------
    >>> issubclass(HubCommitRefusedError, HubPushError)
    True
    """


def _transport_errors() -> tuple[type, ...]:
    """The HTTP clients' network errors (httpx2 / httpx, and requests for older clients)."""
    types: list[type] = [ConnectionError, TimeoutError]
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        types += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return tuple(types)


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _http_status(err) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _describe_http(err) -> str:
    response = getattr(err, "response", None)
    status = _http_status(err)
    server = None
    if response is not None:
        server = response.headers.get("X-Error-Message")
    lines = str(err).strip().splitlines()
    text = server or (lines[0] if lines else type(err).__name__)
    return _one_line(f"HTTP {status}: {text}" if status else text)


def hub_error(err: BaseException, *, action: str, repo_id: str | None, state: str,
              retry: str = "Run the same call again.") -> HubPushError | None:
    """The :class:`HubPushError` for an exception raised by a Hub call, or ``None`` when
    ``err`` is not a Hub, network or token error (a bug to re-raise as is).

    Parameters
    ----------
    err : BaseException
        What the client raised (its ``__cause__`` chain is searched).
    action : str
        What was being done, e.g. ``"committing the coreset to the dataset repo 'me/c'"``.
    repo_id : str or None
        The repo of that step.
    state : str
        The state this call leaves the repos in, one or two sentences.
    retry : str
        How to retry, for network and server errors.

    Examples
    --------
    >>> e = hub_error(ConnectionRefusedError(111, "Connection refused"), action="checking the "
    ...               "token", repo_id=None, state="Nothing was created.")
    >>> type(e).__name__, str(e)
    ('HubNetworkError', 'Could not reach the Hub while checking the token (ConnectionRefusedError: \
[Errno 111] Connection refused). Nothing was created. Check the connection (and HF_ENDPOINT) and \
run the same call again.')
    >>> hub_error(KeyError("x"), action="a", repo_id=None, state="") is None
    True
    """
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
    )

    chain = list(_chain(err))
    upload = next((m.group(1) for e in chain if isinstance(e, RuntimeError)
                   and (m := re.match(r"Error while uploading '(.+)' to the Hub", str(e)))), None)
    if upload is not None:
        action = f"{action}: uploading the LFS file {upload!r}"
    state = f" {state.strip()}" if state.strip() else ""
    kw = {"repo_id": repo_id, "state": state.strip()}
    for e in chain:
        if isinstance(e, LocalTokenNotFoundError):
            return HubAuthError(
                f"token: no Hub token found (token=None, HF_TOKEN unset, not logged in) while "
                f"{action}.{state} {AUTH_FIX}", cause="no token", **kw)
        if isinstance(e, OfflineModeIsEnabled):
            return HubNetworkError(
                f"Offline mode: HF_HUB_OFFLINE=1 is set, so the Hub cannot be reached while "
                f"{action}.{state} Unset HF_HUB_OFFLINE (or export the repos with "
                f"export_coreset_repos and upload them later) and run the same call again.",
                cause="offline mode", **kw)
        if isinstance(e, HfHubHTTPError) and _http_status(e) is not None:
            status, cause = _http_status(e), _describe_http(e)
            where = repr(repo_id) if repo_id else "the repo"
            if upload is None and status == 401:
                return HubAuthError(
                    f"token: the Hub did not accept the token while {action} ({cause}).{state} "
                    f"{AUTH_FIX}", cause=cause, **kw)
            if upload is None and status == 403:
                namespace = repo_id.split("/")[0] if repo_id else "the namespace"
                return HubAuthError(
                    f"token: the token may not write to {where} while {action} ({cause}).{state}"
                    f" Use a token with write access to the namespace {namespace!r}, or push to "
                    f"your own namespace.", cause=cause, **kw)
            if status >= 500:
                return HubServerError(
                    f"The Hub failed while {action} ({cause}).{state} This is on the Hub's side: "
                    f"{retry[0].lower()}{retry[1:]}", cause=cause, **kw)
            return HubCommitRefusedError(
                f"The Hub refused a request while {action} ({cause}).{state} Fix what the Hub "
                f"names, then run the same call again.", cause=cause, **kw)
        if isinstance(e, _transport_errors()):
            cause = _one_line(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            return HubNetworkError(
                f"Could not reach the Hub while {action} ({cause}).{state} Check the connection "
                f"(and HF_ENDPOINT) and {retry[0].lower()}{retry[1:]}", cause=cause, **kw)
    if upload is not None:
        cause = _one_line(f"{type(chain[-1]).__name__}: {chain[-1]}")
        return HubServerError(f"Uploading failed while {action} ({cause}).{state} {retry}",
                              cause=cause, **kw)
    return None
