import pytest
import torch

from wavenet.layers import CausalConv1d, GatedResidualBlock, shift_right


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
    residual, skip = block(x, (cond,))
    assert residual.shape == (2, 4, 20) and skip.shape == (2, 5, 20)
    queue = block.conv.new_queue(2)
    outs = [block(x[..., t : t + 1], (cond[..., t : t + 1],), queue) for t in range(20)]
    torch.testing.assert_close(torch.cat([o[0] for o in outs], -1), residual)
    torch.testing.assert_close(torch.cat([o[1] for o in outs], -1), skip)


def test_gated_block_adds_every_conditioning_input_at_its_own_rate():
    torch.manual_seed(0)
    block = GatedResidualBlock(4, 3, 5, kernel_size=3, dilation=1)
    x = torch.randn(2, 4, 20)
    frames, samples, speaker = torch.randn(2, 6, 5), torch.randn(2, 6, 20), torch.randn(2, 6, 1)
    at_sample_rate = frames.repeat_interleave(4, dim=-1) + samples + speaker
    expected = block(x, (at_sample_rate,))
    for got, wanted in zip(block(x, (frames, samples, speaker)), expected, strict=True):
        torch.testing.assert_close(got, wanted)
    residual, _ = block(x, (frames,))
    assert not torch.allclose(residual, expected[0]), "the other inputs change nothing"
    with pytest.raises(ValueError, match="evenly"):
        block(x, (torch.randn(2, 6, 3),))
