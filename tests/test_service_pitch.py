"""F0 in the HTTP API: a pitch-aware tiny student with its pitch predictor, and a mel-only one.

The student has the harmonic source and untrained (identity) flows, so at temperature 0 its
output is the harmonic synthesis at the F0 it was given: the F0 tracked on the output is the
F0 the service used.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from service_fixtures import (
    decode_wav,
    mel_json,
    random_mel,
    running_client,
    save_pitch_checkpoints,
    save_served_checkpoint,
    service_settings,
    voice,
    wav_bytes,
)

from service.app import create_app
from service.audio_codec import to_pcm16
from service.inference import InferenceWorker
from service.jobs import Job
from wavenet import load_model
from wavenet.pitch import track_f0
from wavenet.synthesis_f0 import SynthesisF0, seeded_phase

pytestmark = pytest.mark.timeout(60)

FRAMES = 20


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_pitch_checkpoints(tmp_path_factory.mktemp("pitch"))


@pytest.fixture(scope="module")
def models(checkpoints):
    student, predictor = (load_model(path) for path in checkpoints)
    return student, predictor


@pytest.fixture(scope="module")
def client(checkpoints):
    # WAVENET_PITCH_MODEL unset: the predictor is found beside the student.
    settings = service_settings(checkpoints[0], max_frames=400, stream_chunk_frames=8)
    with running_client(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def mel_only_client(tmp_path_factory: pytest.TempPathFactory):
    checkpoint = save_served_checkpoint(tmp_path_factory.mktemp("served") / "tiny")
    with running_client(create_app(service_settings(checkpoint))) as client:
        yield client


def pitch_mel(frames: int = FRAMES, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, frames, generator=generator) - 4.0


def steady_f0(hz: float, frames: int = FRAMES) -> torch.Tensor:
    """A voiced track with a pause (frames 5 and 6 unvoiced)."""
    f0 = torch.full((frames,), hz)
    f0[5:7] = 0.0
    return f0


def reference(student, mel, f0, **options) -> np.ndarray:
    """What the student makes for `mel` alone in one pass, as int16 samples."""
    audio = student.generate(mel.unsqueeze(0), f0=f0.unsqueeze(0), frames_per_chunk=10_000, **{
        "temperature": 0.0, **options})  # fmt: skip
    return to_pcm16(audio[0])


def vocode(client, mel, **fields):
    response = client.post("/v1/vocode", json={"mel": mel_json(mel), "temperature": 0, **fields})
    assert response.status_code == 200, response.text
    return response


def tracked_ratio(audio: np.ndarray, against: np.ndarray, spec) -> float:
    """Median F0 ratio of `audio` to `against` over frames both are voiced in (the tracker
    on both)."""
    output, source = track_f0(audio, spec), track_f0(against, spec)
    both = (output > 0) & (source > 0)
    assert both.mean() > 0.8, "too few frames voiced in both: test is vacuous"
    return float(np.median(output[both] / source[both]))


def test_models_says_pitch_aware_its_f0_sources_and_range(client, mel_only_client):
    (info,) = client.get("/v1/models").json()["models"]
    assert info["pitch_aware"] is True
    pitch = info["pitch"]
    assert pitch["f0_sources"] == {"vocode": "request or predictor", "resynthesize": "tracker"}
    assert pitch["f0_max"] == 1000.0 and pitch["pitch_shift_range"] == [-12.0, 12.0]
    assert pitch["predictor"] == "pitch" and pitch["tracker"]["f0_max"] == 600.0
    (mel_only,) = mel_only_client.get("/v1/models").json()["models"]
    assert mel_only["pitch_aware"] is False and mel_only["pitch"] is None


def test_sent_f0_is_used_and_without_it_the_predictors(client, models):
    student, predictor = models
    mel, f0 = pitch_mel(), steady_f0(180.0)
    sent = vocode(client, mel, f0=f0.tolist())
    assert sent.headers["X-F0-Source"] == "request"
    np.testing.assert_array_equal(decode_wav(sent.content)[0], reference(student, mel, f0))
    predicted = predictor.predict_f0(mel.unsqueeze(0))[0]
    assert (predicted > 0).any(), "the predictor voices nothing: test is vacuous"
    alone = vocode(client, mel)
    assert alone.headers["X-F0-Source"] == "predictor"
    np.testing.assert_array_equal(decode_wav(alone.content)[0], reference(student, mel, predicted))
    assert not np.array_equal(decode_wav(sent.content)[0], decode_wav(alone.content)[0])
    answer = client.post("/v1/vocode/f0", json={"mel": mel_json(mel)}).json()
    assert answer["source"] == "predictor"
    torch.testing.assert_close(torch.tensor(answer["unshifted"]), predicted)


def test_f0_as_base64_in_json_and_in_the_query_of_a_npy_body(client, models):
    mel, f0 = pitch_mel(), steady_f0(230.0)
    encoded = base64.b64encode(f0.numpy().astype("<f4").tobytes()).decode()
    expected = reference(models[0], mel, f0)
    as_json = vocode(client, mel, f0=encoded)
    np.testing.assert_array_equal(decode_wav(as_json.content)[0], expected)
    buffer = io.BytesIO()
    np.save(buffer, mel.numpy())
    url_safe = base64.urlsafe_b64encode(f0.numpy().astype("<f4").tobytes()).decode().rstrip("=")
    response = client.post(
        "/v1/vocode",
        params={"temperature": 0, "f0": url_safe},
        content=buffer.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(decode_wav(response.content)[0], expected)


BAD_F0 = [
    ("short", lambda f0: f0[:-1], "f0 has 19 values but the mel has 20 frames"),
    ("long", lambda f0: [*f0, 100.0], "f0 has 21 values but the mel has 20 frames"),
    ("negative", lambda f0: [-5.0, *f0[1:]], "f0 must be >= 0 Hz"),
    ("above range", lambda f0: [1500.0, *f0[1:]], "at most 1000 Hz, the model's range"),
    ("not a number", lambda f0: ["high", *f0[1:]], "f0 value 0 is not a number"),
    ("a bool", lambda f0: [True, *f0[1:]], "f0 value 0 is not a number"),
    ("not a list", lambda f0: {"hz": 100}, "f0 must be a list of numbers or a base64 string"),
    ("bad base64", lambda f0: "%%%", "f0 is not valid base64"),
    ("base64 too short", lambda f0: base64.b64encode(b"\0" * 12).decode(), "f0 has 3 values"),
]


@pytest.mark.parametrize("problem, make, words", BAD_F0, ids=[case[0] for case in BAD_F0])
def test_each_bad_f0_gets_a_422_naming_it(client, problem, make, words):
    f0 = steady_f0(200.0).tolist()
    body = {"mel": mel_json(pitch_mel()), "f0": make(f0)}
    response = client.post("/v1/vocode", json=body)
    assert response.status_code == 422 and words in response.json()["detail"], response.text


@pytest.mark.parametrize("value, words", [("NaN", "NaN or infinite"), ("Infinity", "infinite")])
def test_nan_and_infinite_f0_get_a_422(client, value, words):
    rows = ", ".join(str(row) for row in mel_json(pitch_mel()))
    values = ", ".join(["120.0"] * (FRAMES - 1) + [value])
    body = f'{{"mel": [{rows}], "f0": [{values}]}}'
    response = client.post("/v1/vocode", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and words in response.json()["detail"], response.text
    nan = base64.b64encode(np.full(FRAMES, np.nan, dtype="<f4").tobytes()).decode()
    response = client.post("/v1/vocode", json={"mel": mel_json(pitch_mel()), "f0": nan})
    assert response.status_code == 422 and "NaN" in response.json()["detail"]


@pytest.mark.parametrize("shift", [12.5, -13, "NaN"])
def test_pitch_shift_outside_an_octave_gets_a_422(client, shift):
    body = {"mel": mel_json(pitch_mel()), "pitch_shift": shift}
    response = client.post("/v1/vocode", json=body)
    assert response.status_code == 422 and "pitch_shift" in response.json()["detail"]
    upload = {"file": ("voice.wav", wav_bytes(voice(150.0, 0.2)), "audio/wav")}
    response = client.post("/v1/resynthesize", files=upload, data={"pitch_shift": str(shift)})
    assert response.status_code == 422 and "pitch_shift" in response.json()["detail"]


def test_a_shift_scales_voiced_frames_and_clamps_them_to_f0_max(client):
    f0 = steady_f0(400.0)
    f0[10:] = 900.0
    body = {"mel": mel_json(pitch_mel()), "f0": f0.tolist(), "pitch_shift": 7}
    answer = client.post("/v1/vocode/f0", json=body).json()
    assert answer["source"] == "request" and answer["pitch_shift"] == 7
    shifted = torch.tensor(answer["f0"])
    torch.testing.assert_close(shifted[:5], torch.full((5,), 400.0 * 2 ** (7 / 12)))
    assert shifted[5:7].tolist() == [0.0, 0.0]  # unvoiced stays unvoiced
    assert shifted[10:].tolist() == [1000.0] * 10  # 900 Hz * 1.5 clamped to f0_max
    assert answer["unshifted"] == f0.tolist()


def test_resynthesize_tracks_the_upload(client, models):
    student, _ = models
    samples = voice(160.0, 0.4)
    upload = {"file": ("voice.wav", wav_bytes(samples), "audio/wav")}
    answer = client.post("/v1/resynthesize/f0", files=upload).json()
    audio = torch.from_numpy(decode_wav(wav_bytes(samples))[0] / 32768.0).float()
    tracked = track_f0(audio.numpy(), student.spec, student.config.pitch)
    assert answer["source"] == "tracker" and answer["f0"] == tracked.tolist()
    assert np.median(tracked[tracked > 0]) == pytest.approx(160.0, rel=0.01)
    response = client.post("/v1/resynthesize", files=upload, data={"temperature": "0"})
    assert response.status_code == 200 and response.headers["X-F0-Source"] == "tracker"
    expected = reference(student, student.spec.extract(audio), torch.from_numpy(tracked))
    np.testing.assert_array_equal(decode_wav(response.content)[0], expected)


@pytest.mark.parametrize("shift, ratio", [(12, 2.0), (-12, 0.5), (7, 2 ** (7 / 12))])
def test_pitch_shift_scales_the_f0_tracked_on_the_output(client, models, shift, ratio):
    spec = models[0].spec
    samples = voice(150.0, 0.5)
    upload = {"file": ("voice.wav", wav_bytes(samples), "audio/wav")}

    def resynthesized(semitones: float) -> np.ndarray:
        form = {"temperature": "0", "pitch_shift": str(semitones)}
        response = client.post("/v1/resynthesize", files=upload, data=form)
        assert response.status_code == 200, response.text
        return decode_wav(response.content)[0] / 32768.0

    unshifted = resynthesized(0)
    assert tracked_ratio(unshifted, samples, spec) == pytest.approx(1.0, rel=0.01)
    assert tracked_ratio(resynthesized(shift), unshifted, spec) == pytest.approx(ratio, rel=0.03)


def test_a_shift_of_the_sent_f0_is_heard_in_vocode_too(client, models):
    spec = models[0].spec
    mel = spec.extract(torch.from_numpy(voice(200.0, 0.5)))
    f0 = torch.full((mel.shape[-1],), 200.0)
    plain = vocode(client, mel, f0=f0.tolist())
    octave = vocode(client, mel, f0=f0.tolist(), pitch_shift=12)
    plain, octave = (decode_wav(response.content)[0] / 32768.0 for response in (plain, octave))
    assert tracked_ratio(octave, plain, spec) == pytest.approx(2.0, rel=0.03)


def test_streaming_equals_whole_with_pitch_and_the_seed_sets_the_phase(client, models):
    student, _ = models
    mel, f0 = pitch_mel(frames=23), steady_f0(210.0, frames=23)
    fields = dict(f0=f0.tolist(), temperature=0.7, seed=11)
    whole = vocode(client, mel, **fields).content
    with client.stream(
        "POST", "/v1/vocode?stream=true", json={"mel": mel_json(mel), **fields}
    ) as response:
        assert response.status_code == 200
        streamed = b"".join(response.iter_bytes())
    samples = decode_wav(whole)[0]
    np.testing.assert_array_equal(np.frombuffer(streamed[44:], "<i2"), samples)
    generator = torch.Generator().manual_seed(11)
    expected = reference(
        student, mel, f0, temperature=0.7, generator=generator, phase=torch.tensor(
            [seeded_phase(11)], dtype=torch.float64))  # fmt: skip
    np.testing.assert_array_equal(samples, expected)
    at_zero = dict(f0=f0.tolist(), temperature=0)
    seeded = [decode_wav(vocode(client, mel, **at_zero, seed=s).content)[0] for s in (1, 1, 2)]
    np.testing.assert_array_equal(seeded[0], seeded[1])
    assert not np.array_equal(seeded[0], seeded[2]), "the seed does not set the phase"


def test_a_batch_of_pitch_jobs_gives_each_what_it_gets_alone(models):
    student, predictor = models
    pitch = SynthesisF0.for_model(student, predictor)
    worker = InferenceWorker(student, max_batch_size=3, chunk_frames=4, pitch=pitch)
    mels = [pitch_mel(9, seed=1), pitch_mel(14, seed=2), pitch_mel(5, seed=3)]
    jobs = [
        Job(mels[0], temperature=0.0, f0=steady_f0(150.0, 9), pitch_shift=12, phase=1.0),
        Job(mels[1], temperature=0.0),  # F0 predicted in the worker
        Job(mels[2], temperature=0.0, f0=torch.full((5,), 320.0), pitch_shift=-3.5),
    ]
    for job in jobs:
        worker.submit(job)
    worker.start(warmup_frames=1)
    try:
        for job in jobs:
            f0 = job.f0 if job.f0 is not None else predictor.predict_f0(job.mel[None])[0]
            phase = torch.tensor([job.phase], dtype=torch.float64)
            alone = student.generate(
                pitch.mel_for(job.mel, job.pitch_shift)[None], temperature=0.0,
                f0=pitch.shifted(f0, job.pitch_shift)[None], phase=phase,
                shifted=torch.tensor([job.pitch_shift != 0]))  # fmt: skip
            torch.testing.assert_close(job.future.result(timeout=30).audio, alone[0])
    finally:
        worker.stop()


def test_a_mel_only_model_refuses_f0_and_pitch_shift(mel_only_client):
    mel = random_mel(4)
    cases = [
        ("/v1/vocode", {"f0": [100.0] * 4}, "mel-only (not pitch-aware): it takes no f0"),
        ("/v1/vocode", {"pitch_shift": 3}, "it cannot shift pitch"),
        ("/v1/vocode/f0", {}, "mel-only (not pitch-aware): it uses no F0"),
    ]
    for route, fields, words in cases:
        response = mel_only_client.post(route, json={"mel": mel_json(mel), **fields})
        assert response.status_code == 422 and words in response.json()["detail"], route
    response = mel_only_client.post("/v1/vocode", json={"mel": mel_json(mel), "temperature": 0})
    assert response.status_code == 200 and "X-F0-Source" not in response.headers


def test_a_pitch_aware_model_without_its_predictor_does_not_start(tmp_path, capsys):
    from service.app import run

    student, predictor = save_pitch_checkpoints(tmp_path)
    moved = predictor.rename(tmp_path / "elsewhere")
    with pytest.raises(SystemExit) as exited:
        run(model=student, port=0)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "pitch-aware" in error and str(tmp_path / "pitch") in error
    assert "WAVENET_PITCH_MODEL" in error
    settings = service_settings(student, pitch_model=moved)
    with running_client(create_app(settings)) as client:
        assert client.get("/v1/models").json()["models"][0]["pitch"]["predictor"] == "elsewhere"


def test_a_predictor_of_other_features_or_another_kind_is_refused(tmp_path, checkpoints):
    from conftest import tiny_spec

    from service.runtime import StartupError, load_pitch
    from wavenet import save_model
    from wavenet.pitch_model import PitchPredictor, PitchPredictorConfig

    student = load_model(checkpoints[0])
    other = PitchPredictor(PitchPredictorConfig(channels=4, dilations=[1]), tiny_spec())
    path = save_model(other, tmp_path / "other")
    with pytest.raises(StartupError, match=r"reads other features than the model \(n_fft 64"):
        load_pitch(service_settings(checkpoints[0], pitch_model=path), student)
    with pytest.raises(StartupError, match="is a student checkpoint, not a pitch predictor"):
        load_pitch(service_settings(checkpoints[0], pitch_model=checkpoints[0]), student)
