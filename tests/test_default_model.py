"""The shipped default model (models/default): it loads, speaks, fits, and matches the service.

`make serve` and the Docker image serve models/default/student with no extra step, so these
checks run on the checkpoints exactly as they are committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from service_fixtures import running_client, service_settings

from service.app import create_app
from training.metrics import log_mel_l1, multi_resolution_stft_distance, voiced_periodicity
from wavenet import Student, load_model
from wavenet.audio import load_audio
from wavenet.checkpoint import read_config
from wavenet.excitation import frame_centre
from wavenet.features import FeatureSpec
from wavenet.pitch import track_f0

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "models" / "default"
PARTS = ("teacher", "classifier", "student", "pitch")
CLIP = ROOT / "tests" / "data" / "corpus" / "slt" / "slt_0001.wav"


def test_the_shipped_parts_are_all_there_and_fit_in_30_mb():
    sizes = [path.stat().st_size for part in PARTS for path in (DEFAULT / part).iterdir()]
    assert sorted(p.name for p in (DEFAULT / "student").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    assert sum(sizes) <= 30 * 2**20
    kinds = {part: read_config(DEFAULT / part)["kind"] for part in PARTS}
    assert kinds == {part: part for part in PARTS}


def test_the_shipped_student_speaks_a_held_out_style_clip():
    student = load_model(DEFAULT / "student")
    assert isinstance(student, Student)
    assert student.config.excitation is not None, "the default student is pitch-aware"
    spec = student.spec
    audio = load_audio(CLIP, spec.sample_rate)
    mel = spec.extract(audio)
    f0 = torch.as_tensor(track_f0(audio.numpy(), spec, student.config.pitch))
    speaker = torch.tensor([student.config.speakers.index("slt")])
    generator = torch.Generator().manual_seed(0)
    made = student.generate(mel[None], speaker, generator=generator, f0=f0[None])[0]
    assert made.shape == (mel.shape[-1] * spec.hop_length,)
    assert torch.isfinite(made).all()
    real_rms = float(audio.pow(2).mean().sqrt())
    made_rms = float(made.pow(2).mean().sqrt())
    assert 0.1 * real_rms < made_rms < 10 * real_rms, "not silent, not blown up"
    # Its spectrum follows the clip's: far closer to it than to another utterance's.
    real = audio.numpy()
    padded = np.pad(real, (0, len(made) - len(real)))
    other = load_audio(ROOT / "tests/data/corpus/awb/awb_0002.wav", spec.sample_rate).numpy()
    other = np.resize(other, len(made))
    assert log_mel_l1(padded, made.numpy(), spec) < log_mel_l1(padded, other, spec)
    # It makes a voice, not a whisper: harmonics where the clip is voiced.
    voiced = (f0 > 0).numpy()
    periodicity = voiced_periodicity(
        made.numpy(), voiced, spec.hop_length, spec.sample_rate, frame_centre(spec)
    )
    assert periodicity > 0.8


def test_the_shipped_student_is_closer_to_the_recordings_than_its_untrained_start():
    """Training did not undo the training-free source it starts from: on every bundled clip
    the trained student's MR-STFT distance to the recording is below its untrained start's
    (the same config with fresh weights: the source alone), and so is the mean log-mel L1."""
    student = load_model(DEFAULT / "student")
    start = Student(student.config, student.spec).eval()
    spec = student.spec
    distances = {"student": [], "start": []}
    for path in sorted((ROOT / "tests" / "data" / "corpus").glob("*/*.wav")):
        audio = load_audio(path, spec.sample_rate)
        mel = spec.extract(audio)[None]
        f0 = torch.as_tensor(track_f0(audio.numpy(), spec, student.config.pitch))[None]
        speaker = torch.tensor([student.config.speakers.index(path.parent.name)])
        for name, model in (("student", student), ("start", start)):
            generator = torch.Generator().manual_seed(0)
            made = model.generate(mel, speaker, generator=generator, f0=f0)[0].numpy()
            real = np.pad(audio.numpy(), (0, len(made) - len(audio)))
            distances[name].append(
                (log_mel_l1(real, made, spec), multi_resolution_stft_distance(real, made, 16000))
            )
    assert len(distances["student"]) >= 10
    for trained, untrained in zip(distances["student"], distances["start"], strict=True):
        assert trained[1] < untrained[1], (trained, untrained)
    mean = {name: np.mean([d[0] for d in found]) for name, found in distances.items()}
    assert mean["student"] <= mean["start"], mean


def test_every_shipped_checkpoint_has_the_feature_spec_the_service_reports():
    app = create_app(service_settings(DEFAULT / "student", warmup_frames=1))
    with running_client(app) as client:
        (served,) = client.get("/v1/models").json()["models"]
    reported = FeatureSpec.model_validate(served["spec"])
    for part in PARTS:
        assert load_model(DEFAULT / part).spec == reported, part
    assert load_model(DEFAULT / "student").config.speakers == served["speakers"]
    assert served["pitch_aware"]
