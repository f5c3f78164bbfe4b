"""Requests generated from the app's OpenAPI schema (valid and invalid) never get a 5xx.

Cases come from schemathesis strategies driven by Hypothesis in ordinary tests; its lazy
`from_fixture` loader does not run under this pytest version.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from service_fixtures import (
    running_client,
    save_pitch_checkpoints,
    save_served_checkpoint,
    service_settings,
    wait_until,
)

from service.app import create_app

pytestmark = pytest.mark.timeout(120)

# Bounded so the whole run takes seconds: each valid request runs the model.
EXAMPLES_PER_OPERATION = 12
OPERATIONS = [
    "POST /v1/vocode",
    "POST /v1/resynthesize",
    "POST /v1/vocode/f0",
    "POST /v1/resynthesize/f0",
    "GET /v1/models",
    "GET /livez",
    "GET /readyz",
    "GET /metrics",
    "GET /",
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):
    checkpoint = save_served_checkpoint(tmp_path_factory.mktemp("served") / "tiny")
    app_settings = service_settings(checkpoint, max_frames=4, max_body_bytes=64_000)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings))


def test_the_schema_lists_every_endpoint(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert sorted(f"{op.method.upper()} {op.path}" for op in operations) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_request_gets_a_server_error(api_schema, label):
    # Schemathesis starts the app on the first request of each test and stops it after the
    # test; wait for the warm-up, during which /readyz rightly answers 503.
    readyz = api_schema["/readyz"]["GET"].Case()
    wait_until(lambda: readyz.call().status_code == 200, message="/readyz")
    method, path = label.split(" ")
    operation = api_schema[path][method]
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )
    statuses: list[int] = []

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def never_fails(case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    never_fails()
    assert statuses, "no request was generated"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    checkpoint = save_served_checkpoint(tmp_path_factory.mktemp("served") / "tiny")
    app = create_app(service_settings(checkpoint, max_frames=3))
    with running_client(app, raise_server_exceptions=False) as client:
        yield client


def mel_rows(values: st.SearchStrategy[float]) -> st.SearchStrategy[list[list[float]]]:
    return st.lists(st.lists(values, min_size=8, max_size=8), min_size=1, max_size=3)


in_range = st.floats(-1000, 1000, width=32)
any_float32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
well_shaped_requests = st.fixed_dictionaries(
    {"mel": mel_rows(in_range) | mel_rows(any_float32)},
    optional={
        "speaker": st.sampled_from([0, 1, "alice", "bob"])
        | st.sampled_from([2, -1, "1", "²", "", "eve"]),
        "format": st.sampled_from(["wav", "pcm16", "mulaw", "flac"]),
        "temperature": st.floats(0, 10) | st.sampled_from([0.0, 1e-40, 5e-324]),
        "seed": st.integers(0, 2**63 - 1),
    },
)


@given(body=well_shaped_requests, stream=st.booleans())
@settings(
    max_examples=EXAMPLES_PER_OPERATION * 2,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_well_shaped_mels_with_any_values_never_get_a_server_error(client, body, stream):
    """Schema-generated mels rarely have n_mels values per frame; these always do."""
    # json.dumps writes NaN and Infinity as Python's json module (and the service) read them.
    response = client.post(
        f"/v1/vocode?stream={str(stream).lower()}",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 422), response.text


@pytest.fixture(scope="module")
def pitch_client(tmp_path_factory: pytest.TempPathFactory):
    student, _ = save_pitch_checkpoints(tmp_path_factory.mktemp("pitch"))
    app = create_app(service_settings(student, max_frames=4, stream_chunk_frames=2))
    with running_client(app, raise_server_exceptions=False) as client:
        yield client


pitch_requests = st.fixed_dictionaries(
    {"mel": st.lists(st.lists(in_range, min_size=16, max_size=16), min_size=1, max_size=4)},
    optional={
        "f0": st.lists(any_float32 | st.floats(0, 2000), max_size=5)
        | st.text(max_size=12)
        | st.sampled_from([None, 3, {"b64": "AAAA"}, [True], ["1"]]),
        "pitch_shift": st.floats(-20, 20) | st.sampled_from([float("nan"), "3", None]),
        "temperature": st.sampled_from([0.0, 1.0]),
        "seed": st.integers(0, 2**63 - 1),
    },
)


@given(body=pitch_requests, route=st.sampled_from(["/v1/vocode", "/v1/vocode/f0"]))
@settings(
    max_examples=EXAMPLES_PER_OPERATION * 3,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_any_f0_and_pitch_shift_to_a_pitch_aware_model_never_get_a_server_error(
    pitch_client, body, route
):
    response = pitch_client.post(
        route, content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 422), response.text


def test_the_schema_states_each_mel_layout(client):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "frames x n_mels" in schemas["VocodeRequest"]["properties"]["mel"]["description"]
    assert "[n_mels, frames]" in schemas["MelArray"]["properties"]["shape"]["description"]
    body = document["paths"]["/v1/vocode"]["post"]["requestBody"]["content"]
    assert "(n_mels, frames)" in body["application/x-npy"]["schema"]["description"]
