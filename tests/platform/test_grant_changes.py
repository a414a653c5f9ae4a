"""A change of grants is seen by the very next request, whichever worker serves it.

Before, the grants cache ended only on methods named grant_/create_/update_/…: after a
rename of a registered model its owner was refused for up to 10 s, and a role assigned or
taken away by an admin took as long to count.
"""

from __future__ import annotations

import uuid

from tests.support.platform import PlatformProcess

API = "/api/2.0/mlflow"
ROLES = "/api/3.0/mlflow/roles"
# The fixture runs two workers: a handful of requests reaches both.
TRIES = 6


def test_owner_keeps_access_to_a_renamed_model(sqlite_platform: PlatformProcess) -> None:
    alice = sqlite_platform.client(sqlite_platform.new_user("rename"))
    old, new = f"model-{uuid.uuid4().hex[:8]}", f"model-{uuid.uuid4().hex[:8]}"
    assert alice.post(f"{API}/registered-models/create", json={"name": old}).status_code == 200
    for _ in range(TRIES):  # every worker caches alice's grants
        assert alice.get(f"{API}/registered-models/get", params={"name": old}).status_code == 200

    renamed = alice.post(f"{API}/registered-models/rename", json={"name": old, "new_name": new})
    assert renamed.status_code == 200, renamed.text

    for _ in range(TRIES):
        got = alice.get(f"{API}/registered-models/get", params={"name": new})
        assert got.status_code == 200, got.text
        assert got.json()["registered_model"]["name"] == new


def test_a_role_counts_from_the_next_request_and_ends_as_fast(
    sqlite_platform: PlatformProcess,
) -> None:
    alice = sqlite_platform.client(sqlite_platform.new_user("owner"))
    bob_user = sqlite_platform.new_user("reader")
    bob = sqlite_platform.client(bob_user)
    admin = sqlite_platform.client(sqlite_platform.new_user("root", admin=True))
    experiment = alice.post(
        f"{API}/experiments/create", json={"name": f"roles-{uuid.uuid4().hex[:8]}"}
    ).json()["experiment_id"]
    for _ in range(TRIES):  # every worker caches bob's (empty) grants
        refused = bob.get(f"{API}/experiments/get", params={"experiment_id": experiment})
        assert refused.status_code == 403

    role = admin.post(
        f"{ROLES}/create", json={"name": f"readers-{experiment}", "workspace": "default"}
    )
    assert role.status_code == 200, role.text
    role_id = role.json()["role"]["id"]
    added = admin.post(
        f"{ROLES}/permissions/add",
        json={
            "role_id": role_id,
            "resource_type": "experiment",
            "resource_pattern": experiment,
            "permission": "READ",
        },
    )
    assert added.status_code == 200, added.text
    assigned = admin.post(f"{ROLES}/assign", json={"username": bob_user[0], "role_id": role_id})
    assert assigned.status_code == 200, assigned.text
    for _ in range(TRIES):
        seen = bob.get(f"{API}/experiments/get", params={"experiment_id": experiment})
        assert seen.status_code == 200, seen.text

    taken = admin.request(
        "DELETE", f"{ROLES}/unassign", json={"username": bob_user[0], "role_id": role_id}
    )
    assert taken.status_code == 200, taken.text
    for _ in range(TRIES):
        refused = bob.get(f"{API}/experiments/get", params={"experiment_id": experiment})
        assert refused.status_code == 403
