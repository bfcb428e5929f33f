"""A client generated from the live `/openapi.json` by openapi-python-client (a tool
nobody here wrote) talks to `cmq serve`: what the spec says is what the server takes.
A job's `env` arrives whole, the token is declared as the spec's security scheme, and the
calls are named for what they do."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.conftest import need
from tests.support.served import serving

PACKAGE = "cmq_generated_client"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("generated"), first=231) as it:
        yield it


@pytest.fixture(scope="module")
def generated(served, tmp_path_factory):
    """The client package openapi-python-client makes of the server's spec, imported."""
    tool = shutil.which("openapi-python-client", path=str(sys.prefix) + "/bin")
    need("openapi-python-client (bash .ci/setup --tests)", tool is not None)
    root = tmp_path_factory.mktemp("client")
    (root / "spec.json").write_text(httpx.get(f"{served.url}/openapi.json", timeout=30).text)
    (root / "config.yaml").write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n")
    made = subprocess.run([tool, "generate", "--path", str(root / "spec.json"), "--meta", "none",
                           "--config", str(root / "config.yaml"), "--output-path", str(root / PACKAGE)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    sys.path.insert(0, str(root))
    try:
        yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_spec_declares_the_token_and_describes_env_as_a_map_of_strings(served):
    spec = httpx.get(f"{served.url}/openapi.json", timeout=30).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "cmq_...",
                                 "description": schemes["bearer"]["description"]}
    assert schemes["session"]["type"] == "apiKey" and schemes["session"]["in"] == "cookie"
    assert spec["paths"]["/api/jobs"]["post"]["security"] == [{"bearer": []}, {"session": []}]
    assert "security" not in spec["paths"]["/api/health"]["get"]
    for request in ("JobsRequest", "MapRequest"):
        env = spec["components"]["schemas"][request]["properties"]["env"]
        assert env["type"] == "object" and env["additionalProperties"] == {"type": "string"}
        assert "patternProperties" not in env


def test_a_generated_client_submits_with_env_waits_reads_the_log_maps_and_lists_machines(served, generated):
    client = generated("client").AuthenticatedClient(base_url=served.url, token=served.token,
                                                     timeout=httpx.Timeout(120))
    models = generated("models")
    env = models.JobsRequestEnv.from_dict({"GREETING": "hello there", "SECOND": "2"})
    body = models.JobsRequest(command='echo "$GREETING/$SECOND"', on="m1", env=env)
    submitted = generated("api.jobs.submit_jobs").sync(client=client, body=body)
    assert isinstance(submitted, models.Submitted), submitted
    (job,) = submitted.jobs

    ended = generated("api.jobs.wait_jobs").sync(job.id, client=client, timeout=60.0)
    assert [(j.id, j.state, j.exit_code) for j in ended] == [(job.id, "succeeded", 0)]
    log = generated("api.jobs.job_log").sync_detailed(job.id, client=client)
    assert log.status_code == 200 and log.content == b"hello there/2\n"      # env arrived whole

    body = models.MapRequest(template="echo $(({} * $FACTOR))", args=["1", "2", "3"], reduce="sum",
                             env=models.MapRequestEnv.from_dict({"FACTOR": "10"}), wait=60.0)
    mapped = generated("api.jobs.submit_map").sync(client=client, body=body)
    assert isinstance(mapped, models.MapSubmitted), mapped
    assert mapped.reduce.state == "succeeded" and mapped.reduce.value == 60

    machines = generated("api.machines.list_machines").sync(client=client)
    assert sorted(m.name for m in machines) == ["m1", "m2"]

    anonymous = generated("client").Client(base_url=served.url)
    refused = generated("api.machines.list_machines").sync_detailed(client=anonymous)
    assert refused.status_code == 401
