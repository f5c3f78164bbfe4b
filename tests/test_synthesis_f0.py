"""Pitch shift at synthesis time: the mel's envelope replaces the mel, so the new pitch is heard."""

from pathlib import Path

import numpy as np
import pytest
import torch

from training.bench import student_layout
from wavenet import FeatureSpec, Student, load_model
from wavenet.audio import load_audio, save_audio
from wavenet.pitch import track_f0
from wavenet.synthesis import plan_jobs, run_jobs
from wavenet.synthesis_f0 import SynthesisF0, mel_envelope, shift_f0

SLT = Path(__file__).parent / "data" / "corpus" / "slt" / "slt_0001.wav"
SHIPPED = Path(__file__).parent.parent / "models" / "default" / "student"


def test_the_envelope_keeps_a_smooth_mel_and_drops_a_comb():
    bands, frames = 80, 5
    band = torch.arange(bands, dtype=torch.float64).view(-1, 1).expand(bands, frames)
    smooth = -4.0 + 2.0 * torch.cos(torch.pi * (band + 0.5) * 3 / bands)
    torch.testing.assert_close(mel_envelope(smooth), smooth)
    comb = smooth + 0.5 * torch.cos(torch.pi * (band + 0.5) * 40 / bands)
    torch.testing.assert_close(mel_envelope(comb), smooth)
    assert mel_envelope(comb.unsqueeze(0)).shape == (1, bands, frames)


def test_no_shift_leaves_the_mel_alone():
    mel = torch.randn(80, 7)
    assert SynthesisF0.mel_for(mel, 0.0) is mel
    torch.testing.assert_close(SynthesisF0.mel_for(mel, 3.0), mel_envelope(mel))


@pytest.mark.parametrize("semitones", [12.0, -12.0])
def test_an_octave_shift_is_heard_on_a_recorded_voice(semitones):
    """An untrained student_cpu_pitch.yaml student (its output is the training-free source)
    given slt's mel and its F0 shifted an octave: the F0 tracked on the output follows."""
    spec = FeatureSpec()
    torch.manual_seed(0)
    student = Student(student_layout("student_cpu_pitch.yaml"), spec).eval()
    audio = load_audio(SLT, spec.sample_rate)[: 2 * spec.sample_rate]
    mel = spec.extract(torch.as_tensor(audio))
    f0 = torch.as_tensor(track_f0(audio, spec))
    shifted = shift_f0(f0, semitones, student.config.excitation.f0_max)
    with torch.no_grad():
        made = student.generate(
            SynthesisF0.mel_for(mel, semitones).unsqueeze(0),
            f0=shifted.unsqueeze(0),
            temperature=0.0,
            shifted=torch.tensor([True]),
        )[0]
    tracked = track_f0(made.numpy(), spec)
    both = (tracked > 0) & (f0.numpy() > 0)
    assert both.sum() > 20, "too few voiced frames to judge"
    ratio = np.median(tracked[both] / f0.numpy()[both])
    assert abs(ratio - 2 ** (semitones / 12)) < 0.03 * 2 ** (semitones / 12), ratio


def test_a_mel_far_above_any_audio_still_gives_finite_audio():
    spec = FeatureSpec()
    student = Student(student_layout("student_cpu_pitch.yaml"), spec).eval()
    mel = torch.full((1, spec.n_mels, 4), 500.0)
    with torch.no_grad():
        made = student.generate(mel, f0=torch.full((1, 4), 150.0), temperature=0.0)
    assert torch.isfinite(made).all()


@pytest.mark.parametrize("semitones", [12.0, -12.0])
def test_the_shipped_student_resynthesises_a_recording_an_octave_away(tmp_path, semitones):
    """`wavenet synthesize --pitch-shift` on a recording with the shipped default student:
    the F0 tracked on what it writes is the recording's, times 2^(s / 12), within 3%."""
    model = load_model(SHIPPED).eval()
    pitch = SynthesisF0.for_model(model)
    audio = load_audio(SLT, model.spec.sample_rate)[: 2 * model.spec.sample_rate]
    source = tmp_path / "slt.wav"
    save_audio(source, torch.as_tensor(audio), model.spec.sample_rate)
    written = {}
    for shift in (0.0, semitones):
        jobs = plan_jobs(source, tmp_path / f"out_{shift:+g}.wav")
        run_jobs(model, jobs, temperature=0.0, progress=False, pitch=pitch, pitch_shift=shift)
        written[shift] = load_audio(jobs[0].target, model.spec.sample_rate)
    plain, moved = (track_f0(np.asarray(written[s]), model.spec) for s in (0.0, semitones))
    both = (plain > 0) & (moved > 0)
    assert both.sum() > 20, "too few voiced frames to judge"
    ratio = np.median(moved[both] / plain[both])
    assert abs(ratio - 2 ** (semitones / 12)) < 0.03 * 2 ** (semitones / 12), ratio
