import numpy as np
import pytest
import torch
from conftest import tiny_spec, tiny_teacher_config

from wavenet.conditioning import Conditioner, ConditioningUpsampler, build_conditioner
from wavenet.teacher import TeacherConfig


def test_upsampler_factor_and_initial_linear_interpolation():
    hop = 8
    upsampler = ConditioningUpsampler(hop)
    frames = torch.tensor([[[0.0, 1.0, 3.0]]])
    out = upsampler(frames)
    assert out.shape == (1, 1, 3 * hop)
    # Between the first and last frame centres (i * hop + 3.5) it interpolates linearly.
    centres = torch.arange(3) * hop + (hop - 1) / 2
    positions = torch.arange(3 * hop, dtype=torch.float32)
    inside = (positions >= centres[0]) & (positions <= centres[-1])
    expected = torch.from_numpy(
        np.interp(positions.numpy(), centres.numpy(), frames.flatten().numpy())
    ).float()
    torch.testing.assert_close(out[0, 0, inside], expected[inside])


@pytest.mark.parametrize("hop", [8, 7])
def test_upsampler_window_equals_whole_sequence(hop):
    torch.manual_seed(0)
    upsampler = ConditioningUpsampler(hop)
    with torch.no_grad():
        upsampler.kernel.normal_()
    frames = torch.randn(2, 3, 9)
    whole = upsampler(frames)
    assert whole.shape[-1] == 9 * hop
    for start, stop in [(0, 2), (2, 5), (4, 9), (8, 9), (0, 9)]:
        window = upsampler(frames, start, stop)
        torch.testing.assert_close(window, whole[..., start * hop : stop * hop])


def test_conditioner_shapes_and_speaker_bias():
    torch.manual_seed(0)
    conditioner = Conditioner(8, 6, 10, hop_length=4, n_speakers=3, speaker_dim=2)
    mel = torch.randn(2, 8, 5)
    without = conditioner(mel)
    with_speaker = conditioner(mel, torch.tensor([0, 2]))
    assert without.shape == (2, 10, 20)
    bias = conditioner.speaker_bias(torch.tensor([0, 2]))
    torch.testing.assert_close(with_speaker - without, bias.expand(-1, -1, 20))


def test_conditioner_rejects_unknown_speakers():
    conditioner = Conditioner(8, 6, 10, hop_length=4, n_speakers=2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        conditioner(torch.randn(1, 8, 3), torch.tensor([2]))
    single = Conditioner(8, 6, 10, hop_length=4)
    with pytest.raises(ValueError, match="no speakers"):
        single(torch.randn(1, 8, 3), torch.tensor([0]))


@pytest.mark.parametrize("interpolate", [True, False])
@pytest.mark.parametrize("layers, kernel", [(2, 3), (0, 3), (1, 5)])
def test_conditioning_context_is_exactly_the_frames_that_reach_a_frame(interpolate, layers, kernel):
    torch.manual_seed(0)
    hop = 4
    conditioner = Conditioner(
        8, 6, 10, hop, encoder_layers=layers, encoder_kernel_size=kernel, interpolate=interpolate
    )
    if conditioner.upsampler is not None:
        with torch.no_grad():
            conditioner.upsampler.kernel.normal_()
    context = conditioner.context
    assert context == layers * (kernel // 2) + interpolate
    mel = torch.randn(1, 8, 24)
    frame = 10
    rate = hop if interpolate else 1
    own = slice(frame * rate, (frame + 1) * rate)
    before = conditioner(mel)[..., own]
    for offset in (context + 1, -context - 1):
        far = mel.clone()
        far[..., frame + offset] += 1.0
        torch.testing.assert_close(conditioner(far)[..., own], before, rtol=0, atol=0)
    for offset in (context, -context):
        near = mel.clone()
        near[..., frame + offset] += 1.0
        assert not torch.allclose(conditioner(near)[..., own], before), f"offset {offset}"


@pytest.mark.parametrize("interpolate", [True, False])
def test_a_window_of_the_conditioning_equals_the_same_part_of_the_whole(interpolate):
    torch.manual_seed(0)
    conditioner = Conditioner(8, 6, 10, 4, n_speakers=2, interpolate=interpolate)
    frames, bias = conditioner.project(torch.randn(2, 8, 9), torch.tensor([1, 0]))
    whole = conditioner.window(frames, bias)
    rate = 4 if interpolate else 1
    assert whole.shape == (2, 10, 9 * rate)
    for start, stop in [(0, 2), (3, 7), (8, 9)]:
        window = conditioner.window(frames, bias, start, stop)
        torch.testing.assert_close(window, whole[..., start * rate : stop * rate])


def test_build_conditioner_reads_the_model_config_and_spec():
    config = tiny_teacher_config(cond_channels=5, cond_layers=3, cond_kernel_size=5)
    conditioner = build_conditioner(config, tiny_spec(), out_channels=12, interpolate=False)
    assert conditioner.context == 3 * 2 and conditioner.upsampler is None
    assert conditioner.speaker_embedding.weight.shape == (2, config.speaker_dim)
    assert conditioner(torch.randn(1, 8, 6)).shape == (1, 12, 6)


def test_conditioning_config_rejects_an_even_kernel_and_repeated_speakers():
    with pytest.raises(ValueError, match="odd"):
        TeacherConfig(cond_kernel_size=2)
    with pytest.raises(ValueError, match="unique"):
        TeacherConfig(speakers=["a", "a"])
