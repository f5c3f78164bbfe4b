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
from training.metrics import log_mel_l1, voiced_periodicity
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


def test_every_shipped_checkpoint_has_the_feature_spec_the_service_reports():
    app = create_app(service_settings(DEFAULT / "student", warmup_frames=1))
    with running_client(app) as client:
        (served,) = client.get("/v1/models").json()["models"]
    reported = FeatureSpec.model_validate(served["spec"])
    for part in PARTS:
        assert load_model(DEFAULT / part).spec == reported, part
    assert load_model(DEFAULT / "student").config.speakers == served["speakers"]
    assert served["pitch_aware"]
