import numpy as np
import pytest
import torch

from wavenet.layers import (
    CausalConv1d,
    Conditioner,
    ConditioningUpsampler,
    GatedResidualBlock,
    receptive_field,
    shift_right,
)


def test_receptive_field_formula():
    assert receptive_field(2, [1, 2, 4, 8]) == 16
    assert receptive_field(3, [1, 2, 4]) == 15
    assert receptive_field(2, [2**i for i in range(10)] * 2) == 2047


def test_shift_right_delays_by_one_step():
    x = torch.arange(1.0, 6.0).view(1, 1, 5)
    assert shift_right(x).flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (2, 1), (2, 4), (3, 2), (3, 8)])
def test_causal_conv_step_equals_forward(kernel_size, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel_size, dilation)
    x = torch.randn(2, 3, 40)
    expected = conv(x)
    queue = conv.new_queue(2)
    steps = [conv.step(x[..., t : t + 1], queue) for t in range(x.shape[-1])]
    torch.testing.assert_close(torch.cat(steps, dim=-1), expected)


def test_causal_conv_output_ignores_the_future():
    torch.manual_seed(0)
    conv = CausalConv1d(2, 2, 3, 4)
    x = torch.randn(1, 2, 30)
    changed = x.clone()
    changed[..., 17:] = torch.randn(1, 2, 13)
    torch.testing.assert_close(conv(x)[..., :17], conv(changed)[..., :17])
    assert not torch.allclose(conv(x)[..., 17:], conv(changed)[..., 17:])


def test_gated_block_step_equals_forward_with_conditioning():
    torch.manual_seed(0)
    block = GatedResidualBlock(4, 3, 5, kernel_size=2, dilation=2)
    x, cond = torch.randn(2, 4, 20), torch.randn(2, 6, 20)
    residual, skip = block(x, cond)
    assert residual.shape == (2, 4, 20) and skip.shape == (2, 5, 20)
    queue = block.conv.new_queue(2)
    outs = [block(x[..., t : t + 1], cond[..., t : t + 1], queue) for t in range(20)]
    torch.testing.assert_close(torch.cat([o[0] for o in outs], -1), residual)
    torch.testing.assert_close(torch.cat([o[1] for o in outs], -1), skip)


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
