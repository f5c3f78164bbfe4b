import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from wavenet.stack import ResidualStack, StackConfig, dilations, receptive_field, weight_flops


def stack_config(**overrides) -> StackConfig:
    fields = dict(
        layers=5,
        dilation_cycle=3,
        kernel_size=2,
        residual_channels=4,
        gate_channels=3,
        skip_channels=5,
    )
    return StackConfig(**{**fields, **overrides})


def test_receptive_field_formula():
    assert receptive_field(2, [1, 2, 4, 8]) == 16
    assert receptive_field(3, [1, 2, 4]) == 15
    assert receptive_field(2, [2**i for i in range(10)] * 2) == 2047


def test_dilations_double_and_repeat_in_cycles():
    assert dilations(7, 3) == [1, 2, 4, 1, 2, 4, 1]
    assert dilations(3, 10) == [1, 2, 4]
    config = stack_config()
    assert config.dilations == [1, 2, 4, 1, 2]
    assert config.receptive_field == 1 + 10
    assert config.cond_channels == 5 * 2 * 3


def test_the_blocks_keep_the_checkpoint_names_and_the_last_has_no_residual():
    stack = ResidualStack(stack_config())
    names = set(dict(stack.named_parameters()))
    assert {"0.conv.weight", "0.residual.weight", "4.skip.bias"} <= names
    assert not any(name.startswith("4.residual") for name in names)
    assert [block.conv.dilation[0] for block in stack] == [1, 2, 4, 1, 2]


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_steps_equal_the_sequence_with_inputs_at_three_rates(kernel_size):
    torch.manual_seed(0)
    stack = ResidualStack(stack_config(kernel_size=kernel_size))
    channels = stack.config.cond_channels
    h = torch.randn(2, 4, 24)
    conds = (torch.randn(2, channels, 6), torch.randn(2, channels, 24), torch.randn(2, channels, 1))
    skips, kept = stack(h, conds, keep=[1, 3])
    assert skips.shape == (2, 5, 24) and [k.shape for k in kept] == [(2, 5, 24)] * 2
    queues = stack.new_queues(2)
    steps = []
    for t in range(24):
        step_conds = (conds[0][..., t // 4 : t // 4 + 1], conds[1][..., t : t + 1], conds[2])
        steps.append(stack(h[..., t : t + 1], step_conds, queues)[0])
    torch.testing.assert_close(torch.cat(steps, dim=-1), skips)


def test_kept_skips_are_those_of_the_named_blocks():
    torch.manual_seed(0)
    stack = ResidualStack(stack_config())
    h = torch.randn(1, 4, 10)
    _, kept = stack(h, keep=[0, 2])
    first_residual, first_skip = stack[0](h)
    torch.testing.assert_close(kept[0], first_skip)
    _, second_skip = stack[1](first_residual)
    assert not torch.allclose(kept[1], second_skip), "block 2's skip, not block 1's"


def test_conditioning_with_the_wrong_channels_is_rejected():
    stack = ResidualStack(stack_config())
    with pytest.raises(ValueError, match=r"\(B, 30, steps\)"):
        stack(torch.randn(1, 4, 8), (torch.randn(1, 29, 8),))


def test_weight_flops_match_torch_flop_counter():
    torch.manual_seed(0)
    stack = ResidualStack(stack_config(kernel_size=3))
    h = torch.randn(1, 4, 64)
    with FlopCounterMode(display=False) as counter:
        stack(h, (torch.randn(1, stack.config.cond_channels, 64),))
    assert counter.get_total_flops() == 64 * weight_flops(stack)
