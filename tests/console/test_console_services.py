"""The console's auth rules and the run service's refusals, without a browser (fast)."""

from __future__ import annotations

import pytest

from medfoundry.console.auth import AuthConfigError, AuthSettings, load_tokens


def test_token_file_errors_name_the_line(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# comment\nlong-enough-token-123 operator alice\nanother-long-token-456 admin bob\n")
    with pytest.raises(AuthConfigError, match=r"tokens:3: role 'admin'"):
        load_tokens(path)
    path.write_text("short viewer\n")
    with pytest.raises(AuthConfigError, match="shorter than 16"):
        load_tokens(path)


def test_tokens_roles_and_csrf_binding(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("viewer-token-0123456789 viewer bob\noperator-token-0123456 \n")
    auth = AuthSettings(tokens=load_tokens(path))
    viewer = auth.identify({"authorization": "Bearer viewer-token-0123456789"}, None)
    operator = auth.identify({"authorization": "Bearer operator-token-0123456"}, None)
    assert (viewer.user, viewer.can("viewer"), viewer.can("operator")) == ("bob", True, False)
    assert operator.role == "operator" and operator.user.startswith("operator-")
    assert not auth.identify({"authorization": "Bearer wrong-token-000000000"}, None).authenticated
    assert auth.csrf_ok("session-a", auth.csrf_token("session-a"))
    assert not auth.csrf_ok("session-b", auth.csrf_token("session-a")) and not auth.csrf_ok("session-a", "")
    cookie = auth.encode_session("sid-1", "bob", "viewer")
    assert auth.decode_session(cookie)["user"] == "bob"
    assert auth.decode_session(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None  # tampered signature


def test_proxy_identity_headers():
    auth = AuthSettings(mode="proxy", operators=frozenset({"alice@example.org"}))
    assert auth.identify({"x-forwarded-email": "alice@example.org", "x-forwarded-user": "alice"}, None).role == "operator"
    assert auth.identify({"x-forwarded-user": "mallory"}, None).role == "viewer"
    assert not auth.identify({"authorization": "Bearer anything-at-all-1234"}, None).authenticated


def test_invalid_run_requests_start_nothing(workspace):
    from medfoundry.config import ProfileError
    from medfoundry.services import runs
    from medfoundry.workspace import Workspace

    ws = Workspace.resolve()
    with pytest.raises(ProfileError) as err:
        runs.start_run(ws, "medical-data-curation", "tiny", {"pretrain.max_steps": "many", "sft.batch_size": -1})
    assert set(err.value.fields) == {"pretrain.max_steps", "sft.batch_size"}
    with pytest.raises(runs.RunError, match="unknown pipeline"):
        runs.start_run(ws, "no-such-pipeline", "tiny", {})
    with pytest.raises(runs.RunError, match="targets a cluster"):
        runs.start_run(ws, "medical-data-curation", "production-7b", {})
    with pytest.raises(ProfileError, match="expected KEY=VALUE"):
        runs.parse_overrides(["pretrain.max_steps"])
    assert not list(ws.runs.glob("*")), "a refused request must leave no run record"
