"""The source's noise gate: no noise in the silent blocks beside an onset, none taken from
steady sound, and each block's gain reading only the frames it says it reads."""

import pytest
import torch

from wavenet.features import FeatureSpec
from wavenet.noise_gate import gate_reach, noise_gate
from wavenet.source import HarmonicNoiseSource, SourceConfig, context_frames

SPEC = FeatureSpec()
HOP = SPEC.hop_length


def silence_then_sound(frames: int = 40, onset: int = 16, voiced: bool = True):
    """Digital silence, then a 150 Hz voice with noise (or noise alone) from frame `onset`:
    the log-mel, the F0, and the audio."""
    t = torch.arange(frames * HOP) / SPEC.sample_rate
    sound = 0.02 * torch.randn(frames * HOP, generator=torch.Generator().manual_seed(0))
    if voiced:
        sound = sound + sum(0.2 / k * torch.sin(2 * torch.pi * 150 * k * t) for k in range(1, 20))
    audio = torch.where(torch.arange(frames * HOP) >= onset * HOP, sound, torch.zeros(()))
    f0 = torch.zeros(1, frames)
    if voiced:
        f0[:, onset + 1 :] = 150.0  # the tracker's voicing starts a frame late, as it does
    return SPEC.extract(audio)[None], f0, audio


def block_energy_db(audio: torch.Tensor, blocks: slice) -> float:
    energy = audio[: audio.shape[-1] // HOP * HOP].reshape(-1, HOP).square().sum(1)
    return float(10 * energy[blocks].sum().clamp(min=1e-20).log10())


@pytest.mark.parametrize("voiced", [True, False])
def test_the_gate_keeps_noise_out_of_the_silence_before_an_onset(voiced):
    log_mel, f0, audio = silence_then_sound(voiced=voiced)
    made = {}
    for gate in (0, 5):
        source = HarmonicNoiseSource(SPEC, SourceConfig(resynthesis=1, gate_iterations=gate))
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            made[gate] = source(log_mel, f0, torch.zeros(1), generator).waveform[0]
    before = slice(13, 15)  # silent blocks two and three hops before the onset at block 16
    loud = slice(20, 36)
    assert block_energy_db(made[0], before) > block_energy_db(audio, loud) - 45  # the leak
    assert block_energy_db(made[5], before) < block_energy_db(made[0], before) - 10
    assert block_energy_db(made[5], slice(15, 16)) < block_energy_db(made[0], slice(15, 16))
    assert abs(block_energy_db(made[5], loud) - block_energy_db(made[0], loud)) < 0.5


def test_the_gate_is_open_in_steady_sound_and_shut_in_silence():
    log_mel, f0, _ = silence_then_sound(frames=60, onset=10)
    source = HarmonicNoiseSource(SPEC, SourceConfig(gate_iterations=5))
    from wavenet.source import training_free_parts

    with torch.no_grad():
        _, magnitude = training_free_parts(log_mel, f0, None, None, SPEC, source.config)
        gate = noise_gate(log_mel, magnitude, SPEC, 5, 4.0)[0, 0]
    assert gate.shape == (60,) and ((gate >= 0) & (gate <= 1)).all()
    assert (gate[25:55] == 1).all()  # steady: the noise is well below the block's energy
    assert gate[7] < 0.05  # three frames before the onset: the leak alone


def test_a_blocks_gain_reads_only_its_reach():
    log_mel, f0, _ = silence_then_sound(frames=60, onset=10)
    source = HarmonicNoiseSource(SPEC, SourceConfig(gate_iterations=3))
    from wavenet.source import training_free_parts

    with torch.no_grad():
        _, magnitude = training_free_parts(log_mel, f0, None, None, SPEC, source.config)
        gate = noise_gate(log_mel, magnitude, SPEC, 3, 4.0)
        changed = log_mel.clone()
        changed[..., 9] += 1.0  # the frame before the onset, where the gate is at work
        moved = noise_gate(changed, magnitude, SPEC, 3, 4.0)
    differs = (moved != gate)[0, 0].nonzero()[:, 0]
    reach = gate_reach(3)
    assert len(differs) > 0
    assert differs.min() >= 9 - reach and differs.max() <= 9 + reach
    with_gate = context_frames(SPEC, SourceConfig(gate_iterations=3))
    assert with_gate == context_frames(SPEC, SourceConfig()) + reach
