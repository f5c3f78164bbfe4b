import math

import pytest
import torch
from conftest import tiny_spec, tiny_student

from wavenet import Student, StudentConfig, load_model, mulaw, save_model
from wavenet.student import sample_logistic


def noise(batch=2, length=64, seed=0):
    return sample_logistic((batch, length), torch.Generator().manual_seed(seed))


def test_forward_shapes_and_composed_affine_map():
    student = tiny_student(randomise=True)
    mel = torch.randn(2, 8, 4)
    z = noise()
    x, mu_tot, log_s_tot = student(z, mel)
    assert x.shape == mu_tot.shape == log_s_tot.shape == (2, 64)
    torch.testing.assert_close(x, z * log_s_tot.exp() + mu_tot)


def test_jacobian_is_lower_triangular_with_the_scale_on_its_diagonal():
    student = tiny_student(randomise=True, speakers=["a", "b"]).double()
    mel = torch.randn(1, 8, 2, dtype=torch.float64)
    speaker = torch.tensor([1])
    z = noise(1, 32).double()
    jacobian = torch.autograd.functional.jacobian(lambda v: student(v, mel, speaker)[0], z)[0, :, 0]
    _, _, log_s_tot = student(z, mel, speaker)
    torch.testing.assert_close(jacobian.diagonal(), log_s_tot[0].exp())
    assert (jacobian.triu(diagonal=1) == 0).all()
    # The flow's log-determinant is the sum of the per-step log scales.
    torch.testing.assert_close(torch.linalg.slogdet(jacobian).logabsdet, log_s_tot.sum())
    assert (jacobian.tril(diagonal=-1) != 0).any(), "the flows ignore the past: test is vacuous"


def test_student_is_causal_in_z():
    student = tiny_student(randomise=True)
    mel = torch.randn(2, 8, 4)
    z = noise()
    _, mu, log_s = student(z, mel)
    for t in (0, 10, 40):
        changed = z.clone()
        changed[:, t:] = noise(2, 64 - t, seed=9)
        _, mu_after, log_s_after = student(changed, mel)
        torch.testing.assert_close(mu_after[:, : t + 1], mu[:, : t + 1], rtol=0, atol=0)
        torch.testing.assert_close(log_s_after[:, : t + 1], log_s[:, : t + 1], rtol=0, atol=0)
        assert not torch.allclose(mu_after[:, t + 1 :], mu[:, t + 1 :])


def test_receptive_field_sums_the_flows():
    student = tiny_student()
    # two flows, kernel 3, dilations 1, 2, 4: each sees 1 + 2 * 7 = 15 samples
    assert student.receptive_field == 1 + 15 + 15


def test_log_scale_is_floored():
    student = tiny_student(log_scale_min=-2.0)
    with torch.no_grad():
        for flow in student.flows:
            flow.output.bias[1] = -50.0
    _, _, log_s_tot = student(noise(), torch.randn(2, 8, 4))
    torch.testing.assert_close(log_s_tot, torch.full_like(log_s_tot, -4.0))


def test_initial_scale_is_the_configured_one():
    _, mu, log_s = tiny_student(initial_scale=0.1)(noise(), torch.randn(2, 8, 4))
    torch.testing.assert_close(log_s, torch.full_like(log_s, math.log(0.1)))
    assert (mu == 0).all()


@pytest.mark.parametrize("upsample", ["repeat", "interpolate"])
def test_chunked_generation_equals_one_whole_pass(upsample):
    student = tiny_student(randomise=True, upsample=upsample, speakers=["a", "b"])
    mel, speaker = torch.randn(2, 8, 9), torch.tensor([0, 1])
    chunks = list(
        student.stream(mel, speaker, frames_per_chunk=2, generator=torch.Generator().manual_seed(3))
    )
    assert [c.shape[-1] for c in chunks] == [32, 32, 32, 32, 16]
    x, _, _ = student(noise(2, 9 * 16, seed=3), mel, speaker)
    torch.testing.assert_close(torch.cat(chunks, -1), mulaw.expand(x).clamp(-1, 1))


def test_streaming_upsamples_the_conditioning_one_window_at_a_time():
    """With `interpolate`, no sample-rate conditioning spans the utterance: memory stays
    bounded by the chunk (the paper layout needs ~490 MB of it per second of audio)."""
    student = tiny_student(randomise=True, upsample="interpolate")
    with torch.no_grad():
        student.conditioner.upsampler.kernel.normal_()
    hop, frames_per_chunk = student.spec.hop_length, 4
    context = math.ceil((student.receptive_field - 1) / hop)
    upsampled: list[int] = []
    student.conditioner.upsampler.register_forward_hook(
        lambda module, args, out: upsampled.append(out.shape[-1])
    )
    mel = torch.randn(1, 8, 40)
    generator = torch.Generator().manual_seed(5)
    chunks = list(student.stream(mel, frames_per_chunk=frames_per_chunk, generator=generator))
    assert len(upsampled) == len(chunks) == 10
    assert max(upsampled) == (frames_per_chunk + context) * hop < 40 * hop
    x, _, _ = student(noise(1, 40 * hop, seed=5), mel)
    torch.testing.assert_close(torch.cat(chunks, -1), mulaw.expand(x).clamp(-1, 1))


def test_generate_range_temperature_and_padded_batches():
    student = tiny_student(randomise=True)
    mel = torch.randn(2, 8, 6)
    audio = student.generate(mel)
    assert audio.shape == (2, 96) and audio.abs().max() <= 1.0
    assert torch.equal(
        student.generate(mel, temperature=0.0), student.generate(mel, temperature=0.0)
    )
    padded = mel.clone()
    padded[1, :, 4:] = 0.0
    batch = student.generate(padded, temperature=0.0, mel_lengths=torch.tensor([6, 4]))
    torch.testing.assert_close(batch[1:, :64], student.generate(mel[1:, :, :4], temperature=0.0))


def test_bad_inputs_are_rejected():
    student = tiny_student()
    with pytest.raises(ValueError, match=r"z must be \(B, frames \* hop\)"):
        student(noise(2, 50), torch.randn(2, 8, 4))
    with pytest.raises(ValueError, match=r"mel must be \(B, 8, frames\)"):
        student.generate(torch.randn(2, 80, 4))
    with pytest.raises(ValueError, match="temperature"):
        student.generate(torch.randn(1, 8, 4), temperature=-1)


def test_checkpoint_round_trip(tmp_path):
    student = tiny_student(randomise=True, speakers=["a"])
    loaded = load_model(save_model(student, tmp_path / "student"))
    assert isinstance(loaded, Student) and loaded.config == student.config
    z, mel = noise(), torch.randn(2, 8, 4)
    speaker = torch.tensor([0, 0])
    for mine, theirs in zip(student(z, mel, speaker), loaded(z, mel, speaker), strict=True):
        assert torch.equal(mine, theirs)


def test_paper_layout_is_the_default():
    config = StudentConfig()
    assert config.flow_layers == [10, 10, 10, 30] and config.residual_channels == 64
    student = Student(config, tiny_spec())
    assert len(student.flows) == 4 and len(student.flows[3].blocks) == 30
