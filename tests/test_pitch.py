"""F0 tracking: known pitch recovered, frames on the mel's centres, settings checked."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from wavenet.audio import load_audio
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec, PitchSpecError, check_pitch_spec, track_f0

SPEC = FeatureSpec()
RATE, HOP = SPEC.sample_rate, SPEC.hop_length


def harmonic_tone(f0: np.ndarray, harmonics: int = 8) -> np.ndarray:
    """A waveform (samples,) whose pitch at sample t is f0[t] Hz: harmonics 1/k in amplitude."""
    phase = 2 * math.pi * np.cumsum(f0) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return (0.3 * tone).astype(np.float32)


def test_a_tone_of_150_then_220_hz_then_silence():
    half = RATE // 2  # 0.5 s each
    audio = np.concatenate(
        [harmonic_tone(np.full(2 * half, 150.0))[:half], harmonic_tone(np.full(half, 220.0))]
    )
    audio = np.concatenate([audio, np.zeros(half, np.float32)])
    f0 = track_f0(audio, SPEC)
    assert f0.shape == (SPEC.extract(torch.from_numpy(audio)).shape[-1],) and f0.dtype == np.float32
    centres = (np.arange(f0.size) + 0.5) * HOP
    # Frames whose 60 ms window (f0_min 50 Hz) lies inside one part of the signal.
    reach = PitchSpec().window_seconds * RATE / 2
    inside = {
        150.0: (centres > reach) & (centres < half - reach),
        220.0: (centres > half + reach) & (centres < 2 * half - reach),
        0.0: centres > 2 * half + reach,
    }
    for pitch, frames in inside.items():
        assert frames.sum() >= 10
        if pitch:
            np.testing.assert_allclose(f0[frames], pitch, rtol=0.01)
        else:
            assert not f0[frames].any()


@pytest.mark.parametrize("samples", [1, 100, 255, 256, 257, 1001, 4097, 16000])
def test_one_f0_per_mel_frame_for_any_length(samples):
    audio = harmonic_tone(np.full(samples, 200.0))
    f0 = track_f0(audio, SPEC)
    assert f0.shape == (SPEC.extract(torch.from_numpy(audio)).shape[-1],)
    assert f0.shape == (SPEC.frames_for(samples),)


def test_frames_are_centred_on_their_hop_blocks():
    # A burst of voice centred on frame 40's centre: the voiced frames lie symmetric about 40.
    # A grid off by a frame, or by half a hop, would shift them.
    centre_frame, half_width = 40, 3000
    middle = (centre_frame + 0.5) * HOP
    audio = np.zeros(100 * HOP, np.float32)
    span = slice(round(middle - half_width), round(middle + half_width))
    audio[span] = harmonic_tone(np.full(2 * half_width, 180.0))
    voiced = np.flatnonzero(track_f0(audio, SPEC))
    assert voiced.size > 10 and voiced.min() + voiced.max() == 2 * centre_frame
    # The same holds at another hop, with an odd number of samples.
    spec = FeatureSpec(hop_length=200, n_fft=800, win_length=800)
    middle = (centre_frame + 0.5) * 200
    audio = np.zeros(100 * 200 + 77, np.float32)
    audio[round(middle - half_width) : round(middle + half_width)] = harmonic_tone(
        np.full(2 * half_width, 180.0)
    )
    voiced = np.flatnonzero(track_f0(audio, spec))
    assert voiced.min() + voiced.max() == 2 * centre_frame


def test_a_glide_is_tracked_at_each_frame_centre():
    # F0 rising 120 -> 360 Hz over a second: one frame late would read 1.5-2.5% low.
    samples = np.arange(RATE)
    glide = 120.0 + 240.0 * samples / RATE
    f0 = track_f0(harmonic_tone(glide), SPEC)
    centres = (np.arange(f0.size) + 0.5) * HOP
    inner = (centres > 0.1 * RATE) & (centres < 0.9 * RATE)
    truth = 120.0 + 240.0 * centres[inner] / RATE
    np.testing.assert_allclose(f0[inner], truth, rtol=0.005)


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
@pytest.mark.parametrize("target", [110.0, 150.0])
def test_a_monotone_flite_voice_is_tracked_at_its_pitch(tmp_path, target):
    # flite's intonation model with no spread reads every voiced sound at the target F0.
    wav = tmp_path / "flite.wav"
    pitch = ["--setf", f"int_f0_target_mean={target}", "--setf", "int_f0_target_stddev=0"]
    text = ["-t", "Hello, how are you today? I am fine."]
    subprocess.run(["flite", "-voice", "kal16", *pitch, *text, "-o", str(wav)], check=True)
    speech = load_audio(wav, RATE).numpy()
    audio = np.concatenate([speech, np.zeros(RATE // 2, np.float32)])
    f0 = track_f0(audio, SPEC)
    assert f0.shape == (SPEC.frames_for(audio.size),)
    voiced = f0[f0 > 0]
    assert voiced.size > 0.3 * SPEC.frames_for(speech.size)
    assert np.mean(np.abs(voiced / target - 1) < 0.02) > 0.9, np.percentile(voiced, [5, 50, 95])
    silent = (np.arange(f0.size) + 0.5) * HOP > speech.size + PitchSpec().window_seconds * RATE
    assert silent.sum() > 10 and not f0[silent].any()


def test_bad_audio_and_settings_are_refused():
    with pytest.raises(ValueError, match="empty"):
        track_f0(np.zeros(0, np.float32), SPEC)
    with pytest.raises(ValueError, match=r"\(samples,\)"):
        track_f0(np.zeros((2, 300), np.float32), SPEC)
    with pytest.raises(ValueError, match="NaN or Inf"):
        track_f0(np.array([0.1, np.nan], np.float32), SPEC)
    with pytest.raises(ValueError, match="Nyquist"):
        track_f0(np.zeros(300, np.float32), SPEC, PitchSpec(f0_max=8000))
    with pytest.raises(ValueError, match="f0_min"):
        PitchSpec(f0_min=500, f0_max=400)
    with pytest.raises(ValueError, match="extra"):
        PitchSpec.model_validate({"f0_mni": 60})
    assert np.array_equal(track_f0(np.zeros(3000, np.float32), SPEC), np.zeros(12, np.float32))


def test_a_model_refuses_f0_tracked_with_other_settings():
    check_pitch_spec(PitchSpec(), PitchSpec(), "the model", "PREPARED")
    with pytest.raises(PitchSpecError, match=r"f0_max 600\.0 != 500\.0"):
        check_pitch_spec(PitchSpec(), PitchSpec(f0_max=500), "the model", "PREPARED")
    with pytest.raises(PitchSpecError, match="PREPARED: has no F0"):
        check_pitch_spec(PitchSpec(), None, "the model", "PREPARED")
    with pytest.raises(ValueError, match="tracker"):
        PitchSpec(tracker="yin")
