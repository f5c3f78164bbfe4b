"""Cached constant tensors serve inference and training in one process."""

import torch

from wavenet import noise_synthesis
from wavenet.caching import tensor_cache
from wavenet.features import FeatureSpec
from wavenet.source import HarmonicNoiseSource
from wavenet.source_flow import source_outputs


def test_a_table_first_built_in_inference_mode_still_takes_part_in_backward():
    calls = []

    @tensor_cache(4)
    def ramp(size: int) -> torch.Tensor:
        calls.append(size)
        return torch.arange(size, dtype=torch.float32)

    with torch.inference_mode():
        first = ramp(5)
    weight = torch.ones(5, requires_grad=True)
    (weight * ramp(5)).sum().backward()  # an inference tensor here would raise
    assert ramp(5) is first and calls == [5]
    torch.testing.assert_close(weight.grad, torch.arange(5, dtype=torch.float32))
    assert not first.is_inference() and not first.requires_grad


def test_a_source_served_first_then_trained_in_one_process():
    """The service's inference mode fills the source's caches; a training pass after it
    (the gains' gradients) still runs."""
    noise_synthesis._overlap.cache_clear()
    spec = FeatureSpec()
    source = HarmonicNoiseSource(spec)
    t = torch.arange(9 * spec.hop_length) / spec.sample_rate
    mel = spec.extract(0.3 * torch.sin(2 * torch.pi * 150 * t))[None]
    f0, phase = torch.full((1, 9), 150.0), torch.zeros(1, dtype=torch.float64)
    with torch.inference_mode():
        served = source_outputs(source, mel, f0, phase).waveform
    trained = source_outputs(source, mel, f0, phase)
    (trained.harmonic + trained.noise).square().sum().backward()
    assert source.log_noise_gain.grad.abs().sum() > 0
    torch.testing.assert_close(trained.waveform.detach(), served)
