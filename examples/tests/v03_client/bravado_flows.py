"""Blox v0.3's flows through a client built at run time from the v0.3 specs.

`bravado` reads spec/blox-v0.3/*.swagger.json and validates every response
against it: a declared status, and a body that matches the declared schema
(a string for every error). Run by examples/tests/v03_clients.rs against a
daemon started with `--simulate`:

    .venv/bin/python examples/tests/v03_client/bravado_flows.py HOST:PORT SPEC_DIR

Prints one line per flow and `N passed, 0 failed` at the end; exits non-zero
on the first failure.
"""

import json
import sys

from bravado.client import SwaggerClient
from bravado.exception import HTTPError

CONFIG = {
    "validate_responses": True,
    "validate_requests": True,
    "validate_swagger_spec": True,
    "use_models": False,
    "also_return_response": False,
}


def client(addr, spec_dir, name, validate_requests=True):
    """A client of one v0.3 service, pointed at the daemon (one that skips
    request validation sends what a generated client would refuse to)."""
    with open(f"{spec_dir}/{name}.swagger.json", encoding="utf-8") as f:
        spec = json.load(f)
    spec["host"] = addr
    spec["schemes"] = ["http"]
    config = dict(CONFIG, validate_requests=validate_requests)
    return SwaggerClient.from_spec(spec, origin_url=f"http://{addr}/", config=config)


def op(c, operation_id):
    """The callable of an operation, by its id (the specs have no tags)."""
    for name, resource in c.swagger_spec.resources.items():
        if operation_id in resource.operations:
            return getattr(getattr(c, name), operation_id)
    raise KeyError(operation_id)


def call(c, operation_id, /, **params):
    """The validated result of a successful call."""
    return op(c, operation_id)(**params).response(timeout=10).result


def error(c, operation_id, status, text, /, **params):
    """Asserts that a call fails with a declared `status` whose string body
    starts with v0.3's `text`."""
    try:
        result = op(c, operation_id)(**params).response(timeout=10).result
    except HTTPError as e:
        got = e.response.status_code
        body = e.swagger_result
        assert got == status, f"{operation_id}: status {got}, wanted {status}: {e.response.text!r}"
        # A body decoded and validated as the declared string: the status is
        # declared and the body is what a generated client can read.
        assert isinstance(body, str), f"{operation_id}: undecoded body {e.response.text!r}"
        assert body.startswith(text), f"{operation_id}: body {body!r} does not start with {text!r}"
        return body
    raise AssertionError(f"{operation_id} succeeded, wanted {status}: {result!r}")


def cluster_state(cs):
    """Lists, gets and the declared errors of the cluster-state service."""
    instances = call(cs, "ListInstances", cluster="sim")["items"]
    assert instances, "no instances listed"
    arn = instances[0]["entity"]["containerInstanceARN"]
    one = call(cs, "GetInstance", cluster="sim", arn=arn)
    assert one["entity"]["containerInstanceARN"] == arn
    assert call(cs, "ListInstances", status="active")["items"]
    call(cs, "ListTasks", cluster="sim", status="RUNNING")
    missing_task = "arn:aws:ecs:us-east-1:000000000000:task/sim/0000"
    missing_instance = "arn:aws:ecs:us-east-1:000000000000:container-instance/sim/0000"
    error(cs, "GetTask", 404, "Task not found", cluster="sim", arn=missing_task)
    error(cs, "GetInstance", 404, "Instance not found", cluster="sim", arn=missing_instance)
    error(cs, "GetTask", 404, "Task not found", cluster="sim", arn=arn)
    error(cs, "GetTask", 404, "Task not found", cluster="", arn=missing_task)
    error(cs, "ListTasks", 400, "Invalid status", status="sleeping")
    error(cs, "ListInstances", 400, "Invalid status", status="RUNNING")
    error(cs, "ListTasks", 400, "Invalid cluster ARN or name", cluster="no such/cluster")
    error(cs, "ListInstances", 400, "Invalid cluster ARN or name", cluster="a b")


def environments(ds, loose):
    """v0.3's environment flow: create, deploy with the token, list, get,
    delete twice, and the declared errors on the way."""
    call(ds, "ping")
    body = {"name": "bravado", "instanceGroup": {"cluster": "sim"}, "taskDefinition": "agent:1"}
    env = call(ds, "createEnvironment", body=body)
    assert env["name"] == "bravado"
    # Stored as v0.3 stored them: ARNs, whatever was given.
    assert env["instanceGroup"]["cluster"] == "arn:aws:ecs:us-east-1:000000000000:cluster/sim", env
    assert env["taskDefinition"].startswith("arn:aws:ecs:"), env
    assert env["taskDefinition"].endswith(":task-definition/agent:1"), env
    error(ds, "createEnvironment", 400, "Environment bravado already exists", body=body)
    error(loose, "createEnvironment", 400, "invalid environment name",
          body={"name": "no spaces", "instanceGroup": {"cluster": "sim"}, "taskDefinition": "agent:1"})
    error(ds, "createEnvironment", 404, "Cluster",
          body={"name": "elsewhere", "instanceGroup": {"cluster": "nope"}, "taskDefinition": "agent:1"})

    got = call(ds, "getEnvironment", name="bravado")
    token = got["deploymentToken"]
    error(ds, "getEnvironment", 404, "Environment nope does not exist", name="nope")
    listed = call(ds, "listEnvironments", cluster="sim")["items"]
    assert [e["name"] for e in listed] == ["bravado"], listed
    by_arn = call(ds, "listEnvironments", cluster=env["instanceGroup"]["cluster"])["items"]
    assert [e["name"] for e in by_arn] == ["bravado"], by_arn
    error(ds, "listEnvironments", 400, "Invalid cluster ARN or name", cluster="a b")

    error(ds, "createDeployment", 400, "", name="bravado", deploymentToken="stale")
    error(ds, "createDeployment", 404, "Environment nope does not exist",
          name="nope", deploymentToken=token)
    deployment = call(ds, "createDeployment", name="bravado", deploymentToken=token)
    assert deployment["environmentName"] == "bravado"
    assert deployment["taskDefinition"] == env["taskDefinition"]
    deployments = call(ds, "listDeployments", name="bravado", deploymentToken=token)["items"]
    assert [d["id"] for d in deployments] == [deployment["id"]], deployments
    one = call(ds, "getDeployment", name="bravado", id=deployment["id"])
    assert one["id"] == deployment["id"]
    error(ds, "getDeployment", 404, "Deployment nope does not exist for environment bravado",
          name="bravado", id="nope")
    error(ds, "listDeployments", 404, "Environment nope does not exist",
          name="nope", deploymentToken=token)

    call(ds, "deleteEnvironment", name="bravado")
    call(ds, "deleteEnvironment", name="bravado")
    error(ds, "getEnvironment", 404, "Environment bravado does not exist", name="bravado")


def main():
    addr, spec_dir = sys.argv[1], sys.argv[2]
    cs = client(addr, spec_dir, "cluster-state-service")
    ds = client(addr, spec_dir, "daemon-scheduler")
    loose = client(addr, spec_dir, "daemon-scheduler", validate_requests=False)
    passed = 0
    cluster_state(cs)
    print("cluster-state flows: ok")
    passed += 1
    environments(ds, loose)
    print("daemon-scheduler flows: ok")
    passed += 1
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main()
