import pytest
import torch
from conftest import tiny_spec, tiny_teacher

from wavenet import mulaw

SPEAKERS = torch.tensor([0, 1])


def random_inputs(spec, frames=6, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.rand(batch, frames * spec.hop_length, generator=generator) * 1.6 - 0.8
    return audio, spec.extract(audio)


def test_forward_shape_and_receptive_field():
    teacher = tiny_teacher()
    audio, mel = random_inputs(teacher.spec)
    assert teacher(audio, mel, SPEAKERS).shape == (2, 256, audio.shape[-1])
    # kernel 2, dilations 1, 2, 4, 1, 2, 4
    assert teacher.receptive_field == 1 + 14


def test_changing_the_future_leaves_past_logits_alone():
    teacher = tiny_teacher()
    audio, mel = random_inputs(teacher.spec)
    logits = teacher(audio, mel, SPEAKERS)
    for t in (0, 17, 50, 90):
        changed = audio.clone()
        changed[:, t:] = torch.rand_like(changed[:, t:]) * 2 - 1
        after = teacher(changed, mel, SPEAKERS)
        # logits[t] predicts sample t from samples before it, so it is unchanged too.
        torch.testing.assert_close(after[..., : t + 1], logits[..., : t + 1], rtol=0, atol=0)
        assert not torch.allclose(after[..., t + 1 :], logits[..., t + 1 :])


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_gradient_reaches_exactly_the_receptive_field(kernel_size):
    teacher = tiny_teacher(kernel_size=kernel_size)
    audio, mel = random_inputs(teacher.spec)
    companded = mulaw.compress(audio).requires_grad_(True)
    t = 80
    logits = teacher.forward_companded(companded, mel, SPEAKERS)
    logits[0, :, t].sum().backward()
    grad = companded.grad[0]
    assert (grad[t:] == 0).all(), "a prediction depends on its own sample or later ones"
    assert (grad[: t - teacher.receptive_field] == 0).all(), "receptive field is larger than said"
    assert grad[t - 1] != 0 and grad[t - teacher.receptive_field] != 0
    assert (companded.grad[1] == 0).all(), "batch items leak into each other"


@pytest.mark.parametrize(
    "use_mel, use_speaker, overrides",
    [
        (True, True, {}),
        (True, False, {}),
        (False, True, {}),
        (False, False, {"speakers": []}),
        (True, True, {"kernel_size": 3}),
    ],
)
def test_incremental_steps_equal_the_batch_forward(use_mel, use_speaker, overrides):
    teacher = tiny_teacher(**overrides)
    audio, mel = random_inputs(teacher.spec)
    mel = mel if use_mel else None
    speaker = SPEAKERS if use_speaker else None
    expected = teacher(audio, mel, speaker)
    companded = mulaw.compress(audio)
    if mel is not None:
        frames, bias = teacher.conditioner.project(mel, speaker)
        cond = teacher.conditioner.window(frames, bias)
    else:
        bias = teacher.conditioner.speaker_bias(speaker)
    cache = teacher.new_cache(2)
    steps = []
    with torch.no_grad():
        for t in range(audio.shape[-1]):
            steps.append(teacher.step(bias if mel is None else cond[..., t : t + 1], cache))
            cache.previous = companded[:, t]
    torch.testing.assert_close(torch.stack(steps, dim=-1), expected)


@pytest.mark.parametrize("use_speaker", [True, False])
def test_greedy_generation_agrees_with_the_batch_forward(use_speaker):
    teacher = tiny_teacher()
    _, mel = random_inputs(teacher.spec, frames=7)
    speaker = SPEAKERS if use_speaker else None
    audio = teacher.generate(mel, speaker, temperature=0.0, frames_per_chunk=3)
    assert audio.shape == (2, 7 * teacher.spec.hop_length)
    logits = teacher(audio, mel, speaker)
    assert torch.equal(logits.argmax(dim=1), mulaw.encode(audio))


def test_sampling_is_reproducible_with_a_generator_and_in_range():
    teacher = tiny_teacher()
    _, mel = random_inputs(teacher.spec, frames=3)
    first = teacher.generate(mel, SPEAKERS, generator=torch.Generator().manual_seed(5))
    second = teacher.generate(mel, SPEAKERS, generator=torch.Generator().manual_seed(5))
    third = teacher.generate(mel, SPEAKERS, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, second) and not torch.equal(first, third)
    assert first.abs().max() <= 1.0


def test_stream_chunks_concatenate_to_generate():
    teacher = tiny_teacher()
    _, mel = random_inputs(teacher.spec, frames=5)
    chunks = list(teacher.stream(mel, SPEAKERS, temperature=0.0, frames_per_chunk=2))
    assert [c.shape[-1] for c in chunks] == [32, 32, 16]
    torch.testing.assert_close(torch.cat(chunks, -1), teacher.generate(mel, SPEAKERS, 0.0))


def test_padded_batch_with_lengths_equals_each_item_alone():
    teacher = tiny_teacher()
    hop = teacher.spec.hop_length
    _, mel = random_inputs(teacher.spec, frames=6)
    padded = mel.clone()
    padded[1, :, 4:] = 0.0
    batch = teacher.generate(padded, SPEAKERS, 0.0, mel_lengths=torch.tensor([6, 4]))
    alone = teacher.generate(mel[1:, :, :4], SPEAKERS[1:], 0.0)
    torch.testing.assert_close(batch[1:, : 4 * hop], alone)
    torch.testing.assert_close(batch[:1], teacher.generate(mel[:1], SPEAKERS[:1], 0.0))


def test_unconditional_generation_makes_the_requested_length():
    teacher = tiny_teacher(speakers=[])
    assert teacher.generate(None, length=37, temperature=0.0).shape == (1, 37)
    with pytest.raises(ValueError, match="length"):
        teacher.generate(None)


def test_bad_inputs_are_rejected_with_clear_messages():
    teacher = tiny_teacher()
    audio, mel = random_inputs(teacher.spec)
    with pytest.raises(ValueError, match=r"mel must be \(B, 8, frames\)"):
        teacher(audio, mel[:, :5])
    with pytest.raises(ValueError, match="need at least 7 mel frames"):
        teacher(torch.zeros(2, 100), mel)
    with pytest.raises(ValueError, match="temperature"):
        teacher.generate(mel, temperature=-1.0)
    with pytest.raises(ValueError, match="speaker"):
        teacher(audio, mel, torch.tensor([0, 7]))


def test_gradients_flow_through_the_teacher_input():
    teacher = tiny_teacher().requires_grad_(False)
    audio, mel = random_inputs(tiny_spec())
    companded = mulaw.compress(audio).requires_grad_(True)
    teacher.forward_companded(companded, mel, SPEAKERS).logsumexp(dim=1).sum().backward()
    assert companded.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_every_parameter_is_trained_by_the_likelihood():
    # Unused parameters would break DistributedDataParallel and waste memory.
    teacher = tiny_teacher().train()
    audio, mel = random_inputs(teacher.spec)
    logits = teacher(audio, mel, SPEAKERS)
    torch.nn.functional.cross_entropy(logits, mulaw.encode(audio)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in teacher.parameters())
