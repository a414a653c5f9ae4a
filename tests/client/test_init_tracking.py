"""``mantik.init_tracking()`` as the guide shows it, against the real platform."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest

import mantik
from mantik.client import _auth_provider, _tokens
from tests.support.platform import PlatformProcess


def calls(platform: PlatformProcess, path: str) -> int:
    return platform.log_text().count(f"POST {path} HTTP")


def use(monkeypatch: pytest.MonkeyPatch, platform: PlatformProcess, user: tuple[str, str]) -> None:
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url)


def test_missing_variables_are_listed_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANTIK_USERNAME", "someone")
    with pytest.raises(mantik.MissingEnvironmentError) as info:
        mantik.init_tracking()
    assert info.value.missing == ["MANTIK_PASSWORD", "MLFLOW_TRACKING_URI"]
    assert "MANTIK_PASSWORD, MLFLOW_TRACKING_URI" in str(info.value)


def test_uri_without_scheme_explains_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANTIK_USERNAME", "someone")
    monkeypatch.setenv("MANTIK_PASSWORD", "Some-pass1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mantik.example.org")
    with pytest.raises(mantik.ConfigurationError, match="https://"):
        mantik.init_tracking()


def test_unreachable_platform_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.platform import free_port

    monkeypatch.setenv("MANTIK_USERNAME", "someone")
    monkeypatch.setenv("MANTIK_PASSWORD", "Some-pass1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(mantik.PlatformUnreachable, match="Could not reach"):
        mantik.init_tracking()


def test_init_tracking_points_mlflow_at_platform(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, sqlite_platform, sqlite_platform.new_user())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_platform.url + "/")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "basic-user")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "basic-pass")
    mantik.init_tracking()
    assert mlflow.get_tracking_uri() == sqlite_platform.url
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    mlflow.set_experiment("init-tracking")
    with mlflow.start_run():
        mlflow.log_metric("x", 1.0)


def test_token_file_is_private_and_reused_without_network(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, sqlite_platform, sqlite_platform.new_user())
    mantik.init_tracking()
    token_file = Path.home() / ".mantik" / "tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert os.environ["MANTIK_PASSWORD"] not in token_file.read_text()

    before = calls(sqlite_platform, "/api/mantik/tokens/create")
    first = os.environ["MLFLOW_TRACKING_TOKEN"]
    mantik.init_tracking()
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == first
    assert calls(sqlite_platform, "/api/mantik/tokens/create") == before


def _age_cache(url: str, username: str, **changes: object) -> dict[str, object]:
    path = Path.home() / ".mantik" / "tokens.json"
    data = json.loads(path.read_text())
    entry = data[f"{url}|{username}"]
    entry.update(changes)
    path.write_text(json.dumps(data))
    return entry  # type: ignore[no-any-return]


def test_expired_token_is_refreshed(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = sqlite_platform.new_user()
    use(monkeypatch, sqlite_platform, user)
    first = mantik.init_tracking()
    _age_cache(sqlite_platform.url, user[0], expires_at=datetime.now(UTC).isoformat())
    refreshes = calls(sqlite_platform, "/api/mantik/tokens/refresh")
    second = mantik.init_tracking()
    assert calls(sqlite_platform, "/api/mantik/tokens/refresh") == refreshes + 1
    assert second.refresh_token != first.refresh_token  # rotated


def test_dead_refresh_token_falls_back_to_password(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = sqlite_platform.new_user()
    use(monkeypatch, sqlite_platform, user)
    mantik.init_tracking()
    _age_cache(
        sqlite_platform.url,
        user[0],
        expires_at=datetime.now(UTC).isoformat(),
        refresh_token="not-a-valid-refresh-token",
    )
    creates = calls(sqlite_platform, "/api/mantik/tokens/create")
    tokens = mantik.init_tracking()
    assert calls(sqlite_platform, "/api/mantik/tokens/create") == creates + 1
    assert tokens.fresh()


def test_wrong_password_is_an_authentication_error(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    username, _ = sqlite_platform.new_user()
    use(monkeypatch, sqlite_platform, (username, "Wrong-pass1"))
    with pytest.raises(mantik.AuthenticationError, match="Invalid username or password"):
        mantik.init_tracking()


def test_temporary_password_gives_password_change_required(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, sqlite_platform, sqlite_platform.new_user(ready=False))
    with pytest.raises(mantik.PasswordChangeRequired, match="NEW_PASSWORD_REQUIRED"):
        mantik.init_tracking()


def test_run_outlives_its_access_token(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token that expires mid-run is renewed by the request auth provider."""
    user = sqlite_platform.new_user()
    use(monkeypatch, sqlite_platform, user)
    mantik.init_tracking()
    mlflow.set_experiment("long-run")
    with mlflow.start_run() as run:
        mlflow.log_metric("step", 0)
        # The token the run holds has now "expired" (the server refuses it), while the
        # client still believes it valid: the provider must renew after the 401.
        key = (sqlite_platform.url, user[0])
        held = _auth_provider._RenewingBearer._current[key]
        _auth_provider._RenewingBearer._current[key] = _tokens.Tokens(
            "expired.jwt.token", held.expires_at, held.refresh_token
        )
        mlflow.log_metric("step", 1)
        # And one the client knows to be expired is renewed before it is sent.
        current = _auth_provider._RenewingBearer._current[key]
        _auth_provider._RenewingBearer._current[key] = _tokens.Tokens(
            current.access_token, datetime.now(UTC) - timedelta(minutes=1), current.refresh_token
        )
        mlflow.log_metric("step", 2)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "step")
    assert [m.value for m in history] == [0, 1, 2]


def test_the_guides_shortest_script_tracks(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init_tracking, then log without choosing an experiment: MLflow's shared Default is
    nobody's on the platform, so the run lands in the user's own default experiment."""
    username, password = sqlite_platform.new_user()
    use(monkeypatch, sqlite_platform, (username, password))
    mantik.init_tracking()
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)
    assert mlflow.get_experiment(run.info.experiment_id).name == f"{username}-default"
    assert mlflow.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert "MLFLOW_EXPERIMENT_NAME" not in os.environ  # nothing leaks to child processes


def test_a_chosen_experiment_is_left_alone(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, sqlite_platform, sqlite_platform.new_user())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "chosen-by-me")
    mantik.init_tracking()
    with mlflow.start_run() as run:
        pass
    assert mlflow.get_experiment(run.info.experiment_id).name == "chosen-by-me"
