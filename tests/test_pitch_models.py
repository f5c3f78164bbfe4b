"""Pitch-aware teacher and student: the excitation e in every gate, the harmonic source flow."""

import math

import pytest
import torch
from conftest import tiny_spec, tiny_student, tiny_teacher

from wavenet import Student, StudentConfig, TeacherConfig, load_model, mulaw, save_model
from wavenet.excitation import ExcitationSpec, excitation
from wavenet.pitch import PitchSpec
from wavenet.source import SourceConfig
from wavenet.source_flow import SOURCE_SCALE, SourceSteps, source_outputs
from wavenet.student import sample_logistic

EXCITATION = ExcitationSpec(harmonics=3, f0_max=1000.0)
SPEAKERS = torch.tensor([0, 1])


def voiced_inputs(spec, frames=9, batch=2, seed=0):
    """A two-tone clip's mel, and an F0 track with a pause: voiced, unvoiced, voiced again."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(frames * spec.hop_length) / spec.sample_rate
    f0 = torch.tensor(
        [
            [180.0 + 20 * (i % 10) for i in range(frames)],
            [310.0 - 9 * (i % 10) for i in range(frames)],
        ]
    )
    f0 = f0[:batch]
    f0[:, frames // 3 : frames // 3 + 2] = 0.0
    audio = 0.3 * torch.sin(2 * math.pi * 200 * t) + 0.01 * torch.randn(
        batch, len(t), generator=generator
    )
    phase = torch.rand(batch, generator=generator, dtype=torch.float64) * 2 * math.pi
    return audio, spec.extract(audio), f0, phase


def randomise_excitation(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "excitation" in name:
                parameter.normal_(0, 0.5)
    return model


def pitch_student(randomise=True, **overrides):
    fields = dict(excitation=EXCITATION) | overrides
    return randomise_excitation(tiny_student(randomise=randomise, **fields))


# Configs


def test_mel_only_is_the_default_and_pitch_settings_are_checked():
    assert TeacherConfig().excitation is None and StudentConfig().source is None
    with pytest.raises(ValueError, match="needs an excitation"):
        StudentConfig(source="harmonic")
    with pytest.raises(ValueError, match=r"above excitation\.f0_max"):
        TeacherConfig(excitation=ExcitationSpec(f0_max=500.0), pitch=PitchSpec(f0_max=800.0))


# Teacher


def test_a_new_pitch_teacher_computes_what_the_mel_only_one_does():
    spec = tiny_spec()
    audio, mel, f0, phase = voiced_inputs(spec)
    mel_only = tiny_teacher()
    pitched = tiny_teacher(excitation=EXCITATION)
    missing = pitched.load_state_dict(mel_only.state_dict(), strict=False).missing_keys
    assert missing == ["excitation.weight"]
    expected = mel_only(audio, mel, SPEAKERS)
    torch.testing.assert_close(pitched(audio, mel, SPEAKERS, f0, phase), expected, rtol=0, atol=0)
    randomise_excitation(pitched)
    assert not torch.allclose(pitched(audio, mel, SPEAKERS, f0, phase), expected)


def test_pitch_teacher_reads_a_prebuilt_excitation_and_stays_causal():
    teacher = randomise_excitation(tiny_teacher(excitation=EXCITATION))
    audio, mel, f0, phase = voiced_inputs(teacher.spec)
    e, _ = excitation(f0, teacher.spec, EXCITATION, phase)
    logits = teacher(audio, mel, SPEAKERS, f0, phase)
    torch.testing.assert_close(teacher(audio, mel, SPEAKERS, excitation=e), logits)
    changed = audio.clone()
    changed[:, 50:] = 0.5
    after = teacher(changed, mel, SPEAKERS, f0, phase)
    torch.testing.assert_close(after[..., :51], logits[..., :51], rtol=0, atol=0)
    other_phase = teacher(audio, mel, SPEAKERS, f0, phase + 1.0)
    assert not torch.allclose(other_phase, logits), "the phase does not reach the gates"


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_pitch_teacher_incremental_steps_equal_the_batch_forward(kernel_size):
    teacher = randomise_excitation(tiny_teacher(excitation=EXCITATION, kernel_size=kernel_size))
    audio, mel, f0, phase = voiced_inputs(teacher.spec)
    expected = teacher(audio, mel, SPEAKERS, f0, phase)
    cond = teacher.conditioner(mel, SPEAKERS)
    e, _ = teacher.excitation_signal(f0, phase, mel.shape[-1])
    cache, steps = teacher.new_cache(2), []
    with torch.no_grad():
        for t in range(audio.shape[-1]):
            steps.append(teacher.step(cond[..., t : t + 1], cache, e[..., t : t + 1]))
            cache.previous = mulaw.compress(audio[:, t])
    torch.testing.assert_close(torch.stack(steps, dim=-1), expected)


def test_pitch_teacher_generation_carries_the_phase_across_chunks():
    teacher = randomise_excitation(tiny_teacher(excitation=EXCITATION))
    _, mel, f0, phase = voiced_inputs(teacher.spec, frames=7)
    audio = teacher.generate(mel, SPEAKERS, 0.0, frames_per_chunk=3, f0=f0, phase=phase)
    logits = teacher(audio, mel, SPEAKERS, f0, phase)
    assert torch.equal(logits.argmax(dim=1), mulaw.encode(audio))


def test_pitch_inputs_are_checked_with_clear_messages():
    pitched, mel_only = tiny_teacher(excitation=EXCITATION), tiny_teacher()
    audio, mel, f0, phase = voiced_inputs(pitched.spec)
    with pytest.raises(ValueError, match="pitch-aware: it needs f0"):
        pitched(audio, mel, SPEAKERS)
    with pytest.raises(ValueError, match="takes no f0"):
        mel_only(audio, mel, SPEAKERS, f0)
    with pytest.raises(ValueError, match="f0 has 8 frames, the mel has 9"):
        pitched(audio, mel, SPEAKERS, f0[:, :8])
    with pytest.raises(ValueError, match="f0 must be <= 1000 Hz"):
        pitched(audio, mel, SPEAKERS, f0 * 10)
    with pytest.raises(ValueError, match=r"phase must be \(B,\)"):
        pitched(audio, mel, SPEAKERS, f0, phase[:1])
    with pytest.raises(ValueError, match="pitch-aware: it needs f0"):
        pitch_student().generate(mel)
    with pytest.raises(ValueError, match=r"excitation must be \(2, 7"):
        pitched(audio, mel, SPEAKERS, excitation=torch.zeros(2, 5, audio.shape[-1]))


# Student


def noise(batch, length, seed=0):
    return sample_logistic((batch, length), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("source", [None, "harmonic"])
def test_pitch_student_log_determinant_is_the_sum_of_log_scales(source):
    student = pitch_student(source=source).double()
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=3, batch=1)
    mel, z = mel.double(), noise(1, 3 * spec.hop_length).double()

    def sample(values):
        return student(values, mel, None, f0, phase)[0]

    jacobian = torch.autograd.functional.jacobian(sample, z)[0, :, 0]
    _, _, log_s_tot = student(z, mel, None, f0, phase)
    torch.testing.assert_close(jacobian.diagonal(), log_s_tot[0].exp())
    assert (jacobian.triu(diagonal=1) == 0).all()
    torch.testing.assert_close(torch.linalg.slogdet(jacobian).logabsdet, log_s_tot.sum())
    assert (jacobian.tril(diagonal=-1) != 0).any(), "the flows ignore the past: test is vacuous"


@pytest.mark.parametrize("source", [None, "harmonic"])
@pytest.mark.parametrize("upsample", ["repeat", "interpolate"])
def test_pitch_student_streams_what_one_whole_pass_gives(source, upsample):
    student = pitch_student(source=source, upsample=upsample, speakers=["a", "b"])
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=20)
    hop = spec.hop_length
    chunks = list(
        student.stream(
            mel, SPEAKERS, frames_per_chunk=3, f0=f0, phase=phase,
            generator=torch.Generator().manual_seed(3),
        )
    )  # fmt: skip
    assert sum(chunk.shape[-1] for chunk in chunks) == 20 * hop and len(chunks) == 7
    x, _, _ = student(noise(2, 20 * hop, seed=3), mel, SPEAKERS, f0, phase)
    torch.testing.assert_close(torch.cat(chunks, -1), mulaw.expand(x).clamp(-1, 1))


def test_an_untrained_source_student_is_the_training_free_synthesis():
    student = tiny_student(excitation=EXCITATION, source="harmonic")  # output layers at zero
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=12)
    z = noise(2, 12 * spec.hop_length) * 1e-6
    x, mu_tot, log_s_tot = student(z, mel, None, f0, phase)
    parts = source_outputs(student.source, mel, f0, phase)
    torch.testing.assert_close(mulaw.expand(x), parts.waveform, rtol=0, atol=1e-5)
    torch.testing.assert_close(mu_tot, mulaw.compress(parts.waveform))
    torch.testing.assert_close(log_s_tot, torch.full_like(log_s_tot, math.log(SOURCE_SCALE)))
    voiced = parts.harmonic.abs().amax(-1)
    assert (voiced > 0.05).all(), "the source made no harmonics: test is vacuous"
    assert (parts.noise.abs().amax(-1) > 1e-3).all(), "the source made no noise: test is vacuous"


def test_an_untrained_source_student_at_temperature_one_keeps_the_source_level():
    """z drives only a scale inside one mu-law bin: sampled output stays the synthesis, with
    no full-scale bursts where the source's noise is loud."""
    student = tiny_student(excitation=EXCITATION, source="harmonic")
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=12)
    z = noise(2, 12 * spec.hop_length, seed=5)
    x, _, _ = student(z, mel, None, f0, phase)
    source = source_outputs(student.source, mel, f0, phase).waveform
    error = (mulaw.expand(x) - source).pow(2).mean().sqrt()
    assert error < 0.02 * source.pow(2).mean().sqrt()
    assert mulaw.expand(x).abs().amax() < 1.1 * source.abs().amax() + 0.01


@pytest.mark.parametrize("resynthesis", [0, 1])
def test_source_student_padded_batch_equals_each_item_alone(resynthesis):
    """Items of three lengths, so that the batch's windows end differently per item."""
    settings = SourceConfig(resynthesis=resynthesis)
    student = pitch_student(source="harmonic", source_settings=settings)
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=10)
    mel, f0, phase = (torch.cat([part, part[:1]]) for part in (mel, f0, phase))
    lengths = [10, 6, 8]
    padded_mel, padded_f0 = mel.clone(), f0.clone()
    for item, length in enumerate(lengths):
        padded_mel[item, :, length:] = math.log(spec.log_floor)
        padded_f0[item, length:] = 0.0
    options = dict(temperature=0.0, f0=padded_f0, phase=phase, frames_per_chunk=4)
    batch = student.generate(padded_mel, mel_lengths=torch.tensor(lengths), **options)
    for item, length in enumerate(lengths):
        rows = slice(item, item + 1)
        alone = student.generate(
            mel[rows, :, :length], temperature=0.0, f0=f0[rows, :length], phase=phase[rows]
        )
        torch.testing.assert_close(batch[rows, : length * spec.hop_length], alone)


@pytest.mark.parametrize("gate", [0, 5])
def test_source_student_streams_what_one_whole_pass_gives_with_resynthesis(gate):
    """Resynthesis rounds make the parameters depend on the phase and noise, and the noise
    gate reads frames around each block: the windows still equal the whole."""
    settings = SourceConfig(resynthesis=1, gate_iterations=gate)
    student = pitch_student(source="harmonic", source_settings=settings)
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=20)
    generator = torch.Generator().manual_seed(3)
    chunks = list(student.stream(mel, frames_per_chunk=3, f0=f0, phase=phase, generator=generator))
    x, _, _ = student(noise(2, 20 * spec.hop_length, seed=3), mel, None, f0, phase)
    torch.testing.assert_close(torch.cat(chunks, -1), mulaw.expand(x).clamp(-1, 1))


def test_source_student_training_pass_reaches_the_source_gains():
    """forward: the gains get the gradients of the whole-utterance source they shape."""
    student = tiny_student(excitation=EXCITATION, source="harmonic")  # flows: the identity
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=12)
    weights = torch.randn(2, 12 * spec.hop_length, generator=torch.Generator().manual_seed(1))
    gains = [student.source.log_harmonic_gain, student.source.log_noise_gain]
    _, mu_tot, _ = student(torch.zeros_like(weights), mel, None, f0, phase)
    got = torch.autograd.grad((mu_tot * weights).sum(), gains)
    reference = mulaw.compress(source_outputs(student.source, mel, f0, phase).waveform)
    want = torch.autograd.grad((reference * weights).sum(), gains)
    for mine, theirs in zip(got, want, strict=True):
        torch.testing.assert_close(mine, theirs)
        assert mine.abs().amax() > 0, "no gradient reached the gains: test is vacuous"


def test_source_steps_refuse_a_window_outside_the_frames():
    student = pitch_student(source="harmonic")
    _, mel, f0, _ = voiced_inputs(student.spec, frames=6)
    steps = SourceSteps(student.source, mel, f0)
    for start, stop in [(3, 3), (-1, 2), (4, 7)]:
        with pytest.raises(ValueError, match=r"not within 6 frames"):
            steps.shift_scale(None, start, stop)


def test_pitch_student_checkpoint_round_trip(tmp_path):
    student = pitch_student(source="harmonic")
    loaded = load_model(save_model(student, tmp_path / "student"))
    assert loaded.config == student.config and isinstance(loaded, Student)
    _, mel, f0, phase = voiced_inputs(student.spec)
    z = noise(2, mel.shape[-1] * student.spec.hop_length)
    mine, theirs = student(z, mel, None, f0, phase), loaded(z, mel, None, f0, phase)
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))


@pytest.mark.parametrize("resynthesis", [0, 1])
def test_streaming_source_work_per_chunk_is_bounded_by_the_chunk(monkeypatch, resynthesis):
    """The parameters come once for the utterance (with resynthesis rounds too: they read
    the initial phase and the position-indexed noise) and each chunk only synthesises its
    window (1 frame of context for the harmonics, the WOLA reach for the noise)."""
    import wavenet.source_flow as source_flow

    settings = SourceConfig(resynthesis=resynthesis)
    student = pitch_student(source="harmonic", source_settings=settings)
    spec = student.spec
    _, mel, f0, phase = voiced_inputs(spec, frames=60, batch=1)
    calls = {"training_free_parts": [], "harmonic_sum": [], "filtered_noise": []}
    for name, frames_of in [
        ("training_free_parts", lambda log_mel, *_: log_mel.shape[-1]),
        ("harmonic_sum", lambda amplitudes, *_: amplitudes.shape[-1]),
        ("filtered_noise", lambda magnitude, *_: magnitude.shape[-1]),
    ]:
        original = getattr(source_flow, name)

        def spy(*args, name=name, frames_of=frames_of, original=original):
            calls[name].append(frames_of(*args))
            return original(*args)

        monkeypatch.setattr(source_flow, name, spy)
    chunks = list(student.stream(mel, frames_per_chunk=4, f0=f0, phase=phase))
    window = 4 + math.ceil((student.receptive_field - 1) / spec.hop_length)
    reach = source_flow.noise_reach(spec)
    assert len(chunks) == len(calls["harmonic_sum"]) == len(calls["filtered_noise"]) == 15
    assert max(calls["harmonic_sum"]) == window + 2
    assert max(calls["filtered_noise"]) == window + 2 * reach
    assert calls["training_free_parts"] == [60]
