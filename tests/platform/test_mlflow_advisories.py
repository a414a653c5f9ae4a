"""Published MLflow advisories, tried as an attacker would against the real platform.

Alice owns an experiment with a run, a logged model, artifacts, a registered model, a trace
and an assessment; Bob is another ordinary user who tries to reach them. Each test asserts
what Bob would notice (a refusal or an answer without Alice's data), that Alice's data is
unchanged, and that Alice herself still can.

MLflow 3.17.2 already closes the published ones on this platform. One hole of the same
family was open: a write checked against Bob's experiment that named Alice's trace id took
her trace (see ``test_a_known_trace_id_does_not_let_another_user_take_the_trace``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.platform import test_gate_shapes
from tests.support.platform import unique

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts"
REFUSED = (401, 403, 404)


@dataclass(frozen=True)
class Side:
    """One user of the ``two_users`` fixture, with what they own."""

    username: str
    client: httpx.Client
    experiment_id: str
    run_id: str
    model_id: str

    def run_artifacts(self) -> str:
        """The run's artifact root as a path under the artifact proxy."""
        info = self.client.get(f"{API}/runs/get", params={"run_id": self.run_id})
        uri: str = info.json()["run"]["info"]["artifact_uri"]
        assert uri.startswith("mlflow-artifacts:/"), uri
        return uri.removeprefix("mlflow-artifacts:").lstrip("/")

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


def sides(users: dict[str, dict[str, object]]) -> tuple[Side, Side]:
    def side(entry: dict[str, object]) -> Side:
        user = entry["user"]
        assert isinstance(user, tuple)
        client = entry["client"]
        assert isinstance(client, httpx.Client)
        return Side(
            username=str(user[0]),
            client=client,
            experiment_id=str(entry["experiment_id"]),
            run_id=str(entry["run_id"]),
            model_id=str(entry["model_id"]),
        )

    return side(users["alice"]), side(users["bob"])


# Alice and Bob as test_gate_shapes makes them: each with an experiment, a run (metric
# "secret" = 42) and a logged model.
two_users = test_gate_shapes.two_users


@pytest.fixture
def users(two_users: dict[str, dict[str, object]]) -> tuple[Side, Side]:
    return sides(two_users)


def upload(side: Side, relative: str, content: bytes) -> None:
    put = side.client.put(f"{PROXY}/artifacts/{side.run_artifacts()}/{relative}", content=content)
    assert put.status_code == 200, put.text


def register(side: Side, name: str) -> str:
    """A registered model with one version whose files are in the side's run."""
    upload(side, "model/MLmodel", b"flavors: {}\n")
    created = side.client.post(f"{API}/registered-models/create", json={"name": name})
    assert created.status_code == 200, created.text
    source = f"mlflow-artifacts:/{side.run_artifacts()}/model"
    version = side.client.post(
        f"{API}/model-versions/create",
        json={"name": name, "source": source, "run_id": side.run_id},
    )
    assert version.status_code == 200, version.text
    number: str = version.json()["model_version"]["version"]
    return number


def share_experiment(owner: Side, reader: Side) -> None:
    granted = owner.client.post(
        f"{API3}/users/permissions/grant",
        json={
            "username": reader.username,
            "resource_type": "experiment",
            "resource_id": owner.experiment_id,
            "permission": "READ",
        },
    )
    assert granted.status_code == 200, granted.text


RUN_QUERY = """
query($id: String) {
  mlflowGetRun(input: {runId: $id}) {
    run { info { runId } data { metrics { key value } } modelVersions { name version } }
  }
}"""


# CVE-2025-14297: MLflow's Flask routes and GraphQL answered without an authorization check.


def test_graphql_answers_nothing_about_another_users_runs_and_experiments(
    users: tuple[Side, Side],
) -> None:
    alice, bob = users
    upload(alice, "notes/a.txt", b"alice's notes")
    variables = {"id": alice.run_id, "run": alice.run_id, "exp": alice.experiment_id}
    queries = {
        "mlflowGetRun": RUN_QUERY,
        "mlflowGetExperiment": """query($exp: String) {
            mlflowGetExperiment(input: {experimentId: $exp}) { experiment { name } } }""",
        "mlflowListArtifacts": """query($run: String) {
            mlflowListArtifacts(input: {runId: $run}) { files { path } } }""",
        "mlflowGetMetricHistoryBulkInterval": """query($run: String) {
            mlflowGetMetricHistoryBulkInterval(input: {runIds: [$run], metricKey: "secret"}) {
              metrics { value } } }""",
        "mlflowSearchRuns": """query($exp: String) {
            mlflowSearchRuns(input: {experimentIds: [$exp]}) { runs { info { runId } } } }""",
    }
    for field, query in queries.items():
        answer = bob.graphql(query, variables)
        assert (answer.get("data") or {}).get(field) is None, (field, answer)
    # Mutations are served too; and an unreadable id next to a readable one is dropped.
    searched = bob.graphql(
        """mutation($exp: String, $mine: String) {
          mlflowSearchRuns(input: {experimentIds: [$exp, $mine]}) { runs { info { runId } } }
          mlflowSearchDatasets(input: {experimentIds: [$exp]}) { datasetSummaries { name } } }""",
        {"exp": alice.experiment_id, "mine": bob.experiment_id},
    )
    runs = searched["data"]["mlflowSearchRuns"]["runs"] or []
    assert [r["info"]["runId"] for r in runs] == [bob.run_id]
    assert searched["data"]["mlflowSearchDatasets"] is None
    # Without experiment ids the search covers no experiment, not every experiment.
    unscoped = bob.graphql("query { mlflowSearchRuns(input: {}) { runs { info { runId } } } }")
    found = (unscoped.get("data") or {}).get("mlflowSearchRuns") or {}
    assert alice.run_id not in str(found)

    own = alice.graphql(RUN_QUERY, {"id": alice.run_id})
    run = own["data"]["mlflowGetRun"]["run"]
    assert run["data"]["metrics"] == [{"key": "secret", "value": 42.0}]


def test_mlflows_flask_routes_refuse_another_users_run(users: tuple[Side, Side]) -> None:
    alice, bob = users
    upload(alice, "notes/a.txt", b"alice's notes")
    name = unique("flask-routes")
    version = register(alice, name)
    reads: list[tuple[str, Any]] = [
        ("/get-artifact", {"run_id": alice.run_id, "path": "notes/a.txt"}),
        ("/get-artifact", {"run_uuid": alice.run_id, "path": "notes/a.txt"}),
        ("/model-versions/get-artifact", {"name": name, "version": version, "path": "MLmodel"}),
        (f"{AJAX}/metrics/get-history-bulk", {"run_id": alice.run_id, "metric_key": "secret"}),
        (
            f"{AJAX}/metrics/get-history-bulk",
            [("run_id", bob.run_id), ("run_id", alice.run_id), ("metric_key", "secret")],
        ),
        (
            f"{AJAX}/metrics/get-history-bulk-interval",
            {"run_ids": alice.run_id, "metric_key": "secret"},
        ),
        (
            f"{API}/metrics/get-history-bulk-interval",
            {"run_ids": alice.run_id, "metric_key": "secret"},
        ),
        (f"{AJAX}/runs/get", {"run_id": alice.run_id}),
        (f"{AJAX}/artifacts/list", {"run_id": alice.run_id}),
        (f"{AJAX}/metrics/get-history", {"run_id": alice.run_id, "metric_key": "secret"}),
        (f"{AJAX}/logged-models/{alice.model_id}/artifacts/files", {"artifact_file_path": "x"}),
        (f"{AJAX}/experiments/get", {"experiment_id": alice.experiment_id}),
        ("/ajax-api/2.0/mlflow-artifacts/artifacts", {"path": alice.run_artifacts()}),
    ]
    for path, params in reads:
        response = bob.client.get(path, params=params)
        assert response.status_code in REFUSED, (path, response.status_code, response.text)
        assert "alice's notes" not in response.text and "42" not in response.text, path
    writes: list[tuple[str, Any, Any]] = [
        (f"{AJAX}/experiments/search-datasets", None, {"experiment_ids": [alice.experiment_id]}),
        (
            f"{AJAX}/runs/create-promptlab-run",
            None,
            {
                "experiment_id": alice.experiment_id,
                "run_name": "intruder",
                "prompt_template": "x",
                "prompt_parameters": [],
                "model_route": "x",
                "model_input": "x",
                "mlflow_version": "3.17.2",
            },
        ),
        (f"{AJAX}/upload-artifact", {"run_uuid": alice.run_id, "path": "notes/a.txt"}, None),
        (f"{AJAX}/runs/log-metric", None, {"run_id": alice.run_id, "key": "secret", "value": 0}),
    ]
    for path, params, body in writes:
        if body is None:
            response = bob.client.post(path, params=params, content=b"overwritten")
        else:
            response = bob.client.post(path, params=params, json=body)
        assert response.status_code in REFUSED, (path, response.status_code, response.text)
    searched = bob.client.post(
        f"{AJAX}/runs/search", json={"experiment_ids": [alice.experiment_id]}
    )
    assert searched.status_code == 200 and not searched.json().get("runs"), searched.text

    notes = alice.client.get(
        "/get-artifact", params={"run_id": alice.run_id, "path": "notes/a.txt"}
    )
    assert notes.status_code == 200 and notes.text == "alice's notes"
    listed = alice.client.post(f"{API}/runs/search", json={"experiment_ids": [alice.experiment_id]})
    assert [r["info"]["run_id"] for r in listed.json()["runs"]] == [alice.run_id]
    history = alice.client.get(
        f"{AJAX}/metrics/get-history-bulk", params={"run_id": alice.run_id, "metric_key": "secret"}
    )
    assert history.status_code == 200 and [m["value"] for m in history.json()["metrics"]] == [42]
    artifact = alice.client.get(
        "/model-versions/get-artifact", params={"name": name, "version": version, "path": "MLmodel"}
    )
    assert artifact.status_code == 200, artifact.text


# CVE-2025-15381: traces and their assessments read by users without permission.


def trace_body(trace_id: str, experiment_id: str, owner: str) -> dict[str, Any]:
    """A ``StartTraceV3`` request, as the MLflow client sends it."""
    return {
        "trace": {
            "trace_info": {
                "trace_id": trace_id,
                "trace_location": {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": experiment_id},
                },
                "request_preview": f"{owner}'s question",
                "request_time": "2026-01-01T00:00:00Z",
                "execution_duration": "1s",
                "state": "OK",
                "tags": {"owner": owner},
            }
        }
    }


def start_trace(side: Side) -> str:
    trace_id = f"tr-{uuid.uuid4().hex}"
    started = side.client.post(
        f"{API3}/traces", json=trace_body(trace_id, side.experiment_id, side.username)
    )
    assert started.status_code == 200, started.text
    return trace_id


def otlp_span(trace_id: str, span_id: str, text: str) -> dict[str, Any]:
    """An OTLP/JSON export of one root span (OTLP ids are the hex of MLflow's ``tr-`` id)."""
    span = {
        "traceId": trace_id.removeprefix("tr-"),
        "spanId": span_id,
        "name": text,
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225601000000000",
        "attributes": [{"key": "mlflow.spanInputs", "value": {"stringValue": f'"{text}"'}}],
    }
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]}


def assess(side: Side, trace_id: str) -> str:
    created = side.client.post(
        f"{API3}/traces/{trace_id}/assessments",
        json={
            "assessment": {
                "assessment_name": "quality",
                "trace_id": trace_id,
                "source": {"source_type": "HUMAN", "source_id": side.username},
                "feedback": {"value": f"{side.username} says good"},
            }
        },
    )
    assert created.status_code == 200, created.text
    assessment_id: str = created.json()["assessment"]["assessment_id"]
    return assessment_id


def test_another_users_traces_and_assessments_stay_hidden(users: tuple[Side, Side]) -> None:
    alice, bob = users
    trace_id = start_trace(alice)
    assessment_id = assess(alice, trace_id)
    bobs = start_trace(bob)
    alice_location = {
        "type": "MLFLOW_EXPERIMENT",
        "mlflow_experiment": {"experiment_id": alice.experiment_id},
    }
    one = f"{API3}/traces/{trace_id}"
    the_assessment = f"{one}/assessments/{assessment_id}"
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", one, {}),
        ("GET", f"/ajax-api/3.0/mlflow/traces/{trace_id}", {}),
        ("GET", f"{API}/traces/{trace_id}/info", {}),
        ("GET", f"{API3}/traces/get", {"params": {"trace_id": trace_id}}),
        ("GET", f"{API3}/traces/batchGet", {"params": {"trace_ids": trace_id}}),
        (
            "GET",
            f"{API3}/traces/batchGet",
            {"params": [("trace_ids", bobs), ("trace_ids", trace_id)]},
        ),
        ("POST", f"{API3}/traces/batchGetInfos", {"json": {"trace_ids": [trace_id]}}),
        ("GET", f"{AJAX}/get-trace-artifact", {"params": {"request_id": trace_id}}),
        ("GET", "/ajax-api/3.0/mlflow/get-trace-artifact", {"params": {"request_id": trace_id}}),
        ("GET", the_assessment, {}),
        ("PATCH", the_assessment, {"json": {"assessment": {"feedback": {"value": "bad"}}}}),
        ("DELETE", the_assessment, {}),
        (
            "POST",
            f"{one}/assessments",
            {
                "json": {
                    "assessment": {
                        "assessment_name": "quality",
                        "trace_id": trace_id,
                        "source": {"source_type": "HUMAN", "source_id": bob.username},
                        "feedback": {"value": "bob says bad"},
                    }
                }
            },
        ),
        ("PATCH", f"{one}/tags", {"json": {"key": "owner", "value": "bob"}}),
        ("DELETE", f"{one}/tags", {"params": {"key": "owner"}}),
        ("PATCH", f"{API}/traces/{trace_id}/tags", {"json": {"key": "owner", "value": "bob"}}),
        (
            "POST",
            f"{API}/traces/link-to-run",
            {"json": {"trace_ids": [trace_id], "run_id": bob.run_id}},
        ),
        (
            "POST",
            f"{API3}/traces/delete-traces",
            {"json": {"experiment_id": alice.experiment_id, "request_ids": [trace_id]}},
        ),
        (
            "POST",
            f"{API3}/traces/calculate-filter-correlation",
            {
                "json": {
                    "experiment_ids": [alice.experiment_id],
                    "filter_string1": "trace.status = 'OK'",
                    "filter_string2": "trace.status = 'OK'",
                }
            },
        ),
        (
            "POST",
            f"{API}/traces/link-prompts",
            {"json": {"trace_id": trace_id, "prompt_versions": [{"name": "p", "version": "1"}]}},
        ),
        (
            "POST",
            f"{API3}/traces/metrics",
            {
                "json": {
                    "experiment_ids": [alice.experiment_id],
                    "view_type": "TRACES",
                    "metric_name": "trace_count",
                    "aggregations": [{"aggregation_type": "COUNT"}],
                }
            },
        ),
    ]
    for method, path, kwargs in requests:
        response = bob.client.request(method, path, **kwargs)
        assert response.status_code in REFUSED, (method, path, response.status_code, response.text)
    searches: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"{API3}/traces/search", {"json": {"locations": [alice_location]}}),
        ("GET", f"{API}/traces", {"params": {"experiment_ids": alice.experiment_id}}),
    ]
    for method, path, kwargs in searches:
        response = bob.client.request(method, path, **kwargs)
        assert response.status_code in (*REFUSED, 200), response.text
        assert trace_id not in response.text and alice.username not in response.text, path

    own = alice.client.get(the_assessment)
    assert own.status_code == 200, own.text
    assert own.json()["assessment"]["feedback"]["value"] == f"{alice.username} says good"
    info = alice.client.get(one)
    assert info.status_code == 200, info.text
    trace_info = info.json()["trace"]["trace_info"]
    assert trace_info["tags"]["owner"] == alice.username
    assert len(trace_info.get("assessments", [])) == 1
    found = alice.client.post(f"{API3}/traces/search", json={"locations": [alice_location]})
    assert [t["trace_id"] for t in found.json()["traces"]] == [trace_id]


def test_a_known_trace_id_does_not_let_another_user_take_the_trace(
    users: tuple[Side, Side],
) -> None:
    """Writes checked against Bob's experiment that name Alice's trace by its id.

    Open before ``trace_writes``: StartTraceV3 moved Alice's trace with its assessments into
    Bob's experiment (Bob read them, Alice got 403), an OTLP export added Bob's spans to her
    trace, and ``X-Mlflow-Run-Id`` linked Bob's traces to her run.
    """
    alice, bob = users
    trace_id = start_trace(alice)
    assess(alice, trace_id)
    moved = bob.client.post(
        f"{API3}/traces", json=trace_body(trace_id, bob.experiment_id, bob.username)
    )
    assert moved.status_code == 403, moved.text
    bobs = {"x-mlflow-experiment-id": bob.experiment_id}
    injected = bob.client.post(
        "/v1/traces", json=otlp_span(trace_id, "00000000000000b0", "bob was here"), headers=bobs
    )
    assert injected.status_code == 403, injected.text
    own_trace = f"tr-{uuid.uuid4().hex}"
    linked = bob.client.post(
        "/v1/traces",
        json=otlp_span(own_trace, "00000000000000b1", "bob's own"),
        headers={**bobs, "x-mlflow-run-id": alice.run_id},
    )
    assert linked.status_code == 403, linked.text
    # Two experiment headers: refused, rather than trusting the check and the handler to pick
    # the same one.
    twice = bob.client.post(
        "/v1/traces",
        json=otlp_span(own_trace, "00000000000000b1", "bob's own"),
        headers=[
            ("x-mlflow-experiment-id", bob.experiment_id),
            ("x-mlflow-experiment-id", alice.experiment_id),
        ],
    )
    assert twice.status_code == 403, twice.text
    assert bob.client.get(f"{API3}/traces/{trace_id}").status_code == 403

    kept = alice.client.get(f"{API3}/traces/{trace_id}")
    assert kept.status_code == 200, kept.text
    info = kept.json()["trace"]["trace_info"]
    assert info["trace_location"]["mlflow_experiment"]["experiment_id"] == alice.experiment_id
    assert info["request_preview"] == f"{alice.username}'s question"
    assert info["tags"]["owner"] == alice.username
    assert len(info["assessments"]) == 1
    # Honest writes still work: Bob's own trace, linked to his own run; Alice's spans for her
    # trace, and her client starting a trace its spans already created.
    mine = bob.client.post(
        "/v1/traces",
        json=otlp_span(own_trace, "00000000000000b1", "bob's own"),
        headers={**bobs, "x-mlflow-run-id": bob.run_id},
    )
    assert mine.status_code == 200, mine.text
    alices = {"x-mlflow-experiment-id": alice.experiment_id}
    spans = alice.client.post(
        "/v1/traces", json=otlp_span(trace_id, "00000000000000a0", "alice's span"), headers=alices
    )
    assert spans.status_code == 200, spans.text
    again = alice.client.post(
        f"{API3}/traces", json=trace_body(trace_id, alice.experiment_id, alice.username)
    )
    assert again.status_code == 200, again.text
    # The only span of her trace is hers: none of Bob's was stored.
    full = alice.client.get(f"{API3}/traces/get", params={"trace_id": trace_id})
    assert [s["name"] for s in full.json()["trace"]["spans"]] == ["alice's span"], full.text
    assert bob.client.get(f"{API3}/traces/{own_trace}").status_code == 200


# CVE-2026-2734: SearchModelVersions (and the registry's searches) answered unfiltered.


def test_registry_searches_show_no_other_users_models(users: tuple[Side, Side]) -> None:
    alice, bob = users
    secret = unique("alice-secret")
    register(alice, secret)
    mine = unique("bob-own")
    assert bob.client.post(f"{API}/registered-models/create", json={"name": mine}).is_success
    for prefix in (API, AJAX):
        for params in ({}, {"filter": f"name='{secret}'"}, {"max_results": 1000}):
            versions = bob.client.get(f"{prefix}/model-versions/search", params=params)
            assert versions.status_code == 200, versions.text
            assert secret not in versions.text, (prefix, params)
            models = bob.client.get(f"{prefix}/registered-models/search", params=params)
            assert models.status_code == 200, models.text
            assert secret not in models.text, (prefix, params)
        # Which of Alice's runs have versions is not Bob's to learn either.
        by_run = bob.client.get(
            f"{prefix}/model-versions/search", params={"filter": f"run_id='{alice.run_id}'"}
        )
        assert by_run.status_code in REFUSED or by_run.json().get("model_versions") is None
    seen = bob.client.get(f"{API}/registered-models/search")
    assert mine in [m["name"] for m in seen.json()["registered_models"]]
    graphql = bob.graphql(
        """query($f: String) {
          mlflowSearchModelVersions(input: {filter: $f}) { modelVersions { name } } }""",
        {"f": f"name='{secret}'"},
    )
    assert secret not in str(graphql)
    for path, params in (
        (f"{API}/registered-models/get", {"name": secret}),
        (f"{API}/model-versions/get", {"name": secret, "version": "1"}),
        (f"{API}/registered-models/get-latest-versions", {"name": secret}),
    ):
        response = bob.client.get(path, params=params)
        assert response.status_code in REFUSED, (path, response.text)

    own = alice.client.get(f"{API}/model-versions/search", params={"filter": f"name='{secret}'"})
    assert [v["name"] for v in own.json()["model_versions"]] == [secret]


# GHSA-f253-vggg-rwh8: GraphQL `run { modelVersions }` listed versions of models the caller
# may not read.


def test_graphql_run_model_versions_hide_models_not_shared(users: tuple[Side, Side]) -> None:
    alice, bob = users
    secret = unique("unshared-model")
    register(alice, secret)
    # Before the share: not the run, and so not its versions.
    before = bob.graphql(RUN_QUERY, {"id": alice.run_id})
    assert before["data"]["mlflowGetRun"] is None
    # The experiment is shared, the registered model is not.
    share_experiment(alice, bob)
    shared = bob.graphql(RUN_QUERY, {"id": alice.run_id})
    run = shared["data"]["mlflowGetRun"]["run"]
    assert run["info"]["runId"] == alice.run_id
    assert run["modelVersions"] == []
    searched = bob.graphql(
        """query($exp: String) { mlflowSearchRuns(input: {experimentIds: [$exp]}) {
          runs { info { runId } modelVersions { name } } } }""",
        {"exp": alice.experiment_id},
    )
    assert secret not in str(searched)
    assert alice.run_id in str(searched)

    own = alice.graphql(RUN_QUERY, {"id": alice.run_id})
    assert own["data"]["mlflowGetRun"]["run"]["modelVersions"] == [{"name": secret, "version": "1"}]


# GHSA-3p64-6gvh-82v5: LogInputs wrote into runs without the run's permission check.


def test_log_inputs_into_another_users_run_is_refused(users: tuple[Side, Side]) -> None:
    alice, bob = users
    dataset = {
        "name": "poisoned",
        "digest": "deadbeef",
        "source_type": "local",
        "source": '{"uri": "/tmp/poison"}',
    }
    body = {"run_id": alice.run_id, "datasets": [{"dataset": dataset, "tags": []}]}
    for prefix in (API, AJAX):
        assert bob.client.post(f"{prefix}/runs/log-inputs", json=body).status_code == 403
        # Bob's own run, but Alice's logged model as an input or output.
        for endpoint in ("log-inputs", "log-outputs"):
            crossing = bob.client.post(
                f"{prefix}/runs/{endpoint}",
                json={"run_id": bob.run_id, "models": [{"model_id": alice.model_id}]},
            )
            assert crossing.status_code == 403, (endpoint, crossing.text)
        uuid_alias = bob.client.post(
            f"{prefix}/runs/log-inputs", json={"run_uuid": alice.run_id, **body}
        )
        assert uuid_alias.status_code in (400, 403)
    run = alice.client.get(f"{API}/runs/get", params={"run_id": alice.run_id}).json()["run"]
    assert not run.get("inputs", {}).get("dataset_inputs")
    outputs = run.get("outputs", {}).get("model_outputs", [])
    assert alice.model_id not in str(outputs)
    bob_run = bob.client.get(f"{API}/runs/get", params={"run_id": bob.run_id}).json()["run"]
    assert alice.model_id not in str(bob_run)

    own = alice.client.post(
        f"{API}/runs/log-inputs",
        json={**body, "datasets": [{"dataset": {**dataset, "name": "clean"}}]},
    )
    assert own.status_code == 200, own.text


# GHSA-8c7q-86fq-vvmh: the artifact proxy's multipart-upload endpoints skipped the check.


def test_multipart_upload_into_another_users_run_is_refused(users: tuple[Side, Side]) -> None:
    alice, bob = users
    upload(alice, "weights.bin", b"alice's weights")
    target = f"{alice.run_artifacts()}/weights.bin"
    calls = {
        "create": {"path": "weights.bin", "num_parts": 1},
        "complete": {
            "path": "weights.bin",
            "upload_id": "x",
            "parts": [{"part_number": 1, "etag": "x"}],
        },
        "abort": {"path": "weights.bin", "upload_id": "x"},
    }
    for prefix in (PROXY, "/ajax-api/2.0/mlflow-artifacts"):
        for step, body in calls.items():
            response = bob.client.post(f"{prefix}/mpu/{step}/{target}", json=body)
            assert response.status_code == 403, (prefix, step, response.text)
        presigned = bob.client.get(f"{prefix}/presigned/{target}")
        assert presigned.status_code == 403, presigned.text
    for endpoint in ("presigned-upload-url", "presigned-download-url"):
        response = bob.client.post(
            f"{API}/artifacts/{endpoint}", json={"run_id": alice.run_id, "path": "weights.bin"}
        )
        assert response.status_code in REFUSED, (endpoint, response.text)

    kept = alice.client.get(f"{PROXY}/artifacts/{target}")
    assert kept.status_code == 200 and kept.content == b"alice's weights"
    # The owner passes the gate: the local artifact store itself has no multipart uploads.
    own = alice.client.post(f"{PROXY}/mpu/create/{target}", json=calls["create"])
    assert own.status_code not in REFUSED, own.text


# Stale grants: the next creator of a deleted or renamed model's name inherits nobody's grant.


def test_grants_on_a_deleted_or_renamed_model_name_are_not_inherited(
    users: tuple[Side, Side],
) -> None:
    alice, bob = users
    deleted, renamed, moved = unique("deleted"), unique("renamed"), unique("moved")
    for name in (deleted, renamed):
        created = alice.client.post(f"{API}/registered-models/create", json={"name": name})
        assert created.status_code == 200, created.text
    gone = alice.client.request("DELETE", f"{API}/registered-models/delete", json={"name": deleted})
    assert gone.status_code == 200, gone.text
    rename = alice.client.post(
        f"{API}/registered-models/rename", json={"name": renamed, "new_name": moved}
    )
    assert rename.status_code == 200, rename.text
    # `newName`, the JSON name MLflow's parser also takes, would rename without moving the
    # grants (MLflow's grant hook reads `new_name` only): MLflow's check refuses it first.
    camel = alice.client.post(
        f"{API}/registered-models/rename", json={"name": moved, "newName": unique("camel")}
    )
    assert camel.status_code == 400, camel.text
    assert alice.client.get(f"{API}/registered-models/get", params={"name": moved}).is_success
    for name in (deleted, renamed):
        taken = bob.client.post(
            f"{API}/registered-models/create",
            json={"name": name, "description": "bob's model"},
        )
        assert taken.status_code == 200, taken.text
        for path, params in (
            (f"{API}/registered-models/get", {"name": name}),
            (f"{API}/registered-models/get-latest-versions", {"name": name}),
        ):
            response = alice.client.get(path, params=params)
            assert response.status_code in REFUSED, (name, path, response.text)
        update = alice.client.patch(
            f"{API}/registered-models/update", json={"name": name, "description": "alice's"}
        )
        assert update.status_code in REFUSED, update.text
        listed = alice.client.get(f"{API}/registered-models/search")
        assert name not in [m["name"] for m in listed.json().get("registered_models", [])]
        grant = alice.client.post(
            f"{API3}/users/permissions/grant",
            json={
                "username": alice.username,
                "resource_type": "registered_model",
                "resource_id": name,
                "permission": "MANAGE",
            },
        )
        assert grant.status_code in REFUSED, grant.text
        got = bob.client.get(f"{API}/registered-models/get", params={"name": name})
        assert got.json()["registered_model"]["description"] == "bob's model"


def test_experiment_grants_follow_the_id_not_the_name(users: tuple[Side, Side]) -> None:
    """Experiments are granted by id; a deleted experiment keeps its name, so nobody else can
    take it over, and its owner alone may restore it."""
    alice, bob = users
    name = unique("experiment")
    created = alice.client.post(f"{API}/experiments/create", json={"name": name})
    experiment_id = created.json()["experiment_id"]
    deleted = alice.client.post(f"{API}/experiments/delete", json={"experiment_id": experiment_id})
    assert deleted.status_code == 200, deleted.text
    assert bob.client.post(f"{API}/experiments/create", json={"name": name}).status_code == 400
    restore = bob.client.post(f"{API}/experiments/restore", json={"experiment_id": experiment_id})
    assert restore.status_code in REFUSED, restore.text
    renamed = bob.client.post(
        f"{API}/experiments/update", json={"experiment_id": experiment_id, "new_name": "x"}
    )
    assert renamed.status_code in REFUSED, renamed.text
    restored = alice.client.post(
        f"{API}/experiments/restore", json={"experiment_id": experiment_id}
    )
    assert restored.status_code == 200, restored.text
    # A rename frees the old name; its next creator gets a new id and alice no grant on it.
    new_name = unique("experiment")
    moved = alice.client.post(
        f"{API}/experiments/update", json={"experiment_id": experiment_id, "new_name": new_name}
    )
    assert moved.status_code == 200, moved.text
    taken = bob.client.post(f"{API}/experiments/create", json={"name": name})
    assert taken.status_code == 200, taken.text
    bobs = taken.json()["experiment_id"]
    assert bobs != experiment_id
    refused = alice.client.get(f"{API}/experiments/get-by-name", params={"experiment_name": name})
    assert refused.status_code in REFUSED, refused.text
    assert (
        alice.client.get(f"{API}/experiments/get", params={"experiment_id": bobs}).status_code
        == 403
    )
    own = alice.client.get(f"{API}/experiments/get", params={"experiment_id": experiment_id})
    assert own.json()["experiment"]["name"] == new_name
