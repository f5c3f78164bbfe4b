import pytest
import torch
from conftest import tiny_student

from training.bench import student_layout
from wavenet import FeatureSpec, Student, flow_inference, mulaw
from wavenet.excitation import ExcitationSpec
from wavenet.flow_inference import prepare_flow
from wavenet.source_flow import source_shift_scale
from wavenet.student import sample_logistic


def randomised_student(**overrides) -> Student:
    """A tiny student whose every weight and bias is random, so that no term can hide."""
    student = tiny_student(randomise=True, **overrides)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.normal_(0, 0.3)
    return student


@pytest.mark.parametrize("upsample", ["repeat", "interpolate"])
@pytest.mark.parametrize(
    "widths",
    [
        dict(residual_channels=8, gate_channels=8, skip_channels=8),
        dict(residual_channels=6, gate_channels=5, skip_channels=7, kernel_size=2),
    ],
)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("pitch", [None, "excitation", "source"])
def test_prepared_flow_equals_the_reference_flow(upsample, widths, batch, pitch):
    pitched = {} if pitch is None else {"excitation": ExcitationSpec(harmonics=2)}
    if pitch == "source":
        pitched["source"] = "harmonic"
    student = randomised_student(upsample=upsample, flow_layers=[4, 2], **widths, **pitched)
    mel = torch.randn(batch, 8, 5) - 3.0
    z = sample_logistic((batch, 5 * 16), torch.Generator().manual_seed(1))
    f0 = torch.linspace(150.0, 300.0, 5).repeat(batch, 1) if pitch else None
    phase = torch.linspace(0.5, 2.0, batch, dtype=torch.float64) if pitch else None
    cond = student.conditioning(mel)
    with torch.no_grad():
        e, _ = student.excitation_signal(f0, phase, 5)
        source = student.source and source_shift_scale(student.source, mel, f0, phase)
        conds = cond.split(student.flow_channels, 1)
        for flow, flow_cond in zip(student.flows, conds, strict=True):
            want = flow(z, flow_cond, e)
            got = prepare_flow(flow)(z, flow_cond, e)
            for mine, reference in zip(got, want, strict=True):
                torch.testing.assert_close(mine, reference, rtol=0, atol=1e-5)
        prepared = [prepare_flow(flow) for flow in student.flows]
        torch.testing.assert_close(
            student.sample(z, cond, prepared, e, source),
            student.flow(z, cond, e, source)[0],
            rtol=0,
            atol=1e-5,
        )


def test_prepared_flow_is_causal_and_keeps_batch_items_apart():
    student = randomised_student()
    flow = prepare_flow(student.flows[0])
    cond = student.conditioning(torch.randn(3, 8, 4)).split(student.flow_channels, 1)[0]
    z = sample_logistic((3, 64), torch.Generator().manual_seed(2))
    mu, log_s = flow(z, cond)
    for t in (0, 20, 63):
        changed = z.clone()
        changed[1, t:] += 1.0  # the middle item: both neighbours share the buffer with it
        mu_after, log_s_after = flow(changed, cond)
        for before, after in ((mu, mu_after), (log_s, log_s_after)):
            assert torch.equal(after[[0, 2]], before[[0, 2]])
            assert torch.equal(after[1, : t + 1], before[1, : t + 1])
            assert t == 63 or not torch.equal(after[1, t + 1 :], before[1, t + 1 :])


def test_a_batch_split_into_groups_gives_what_one_pass_gives(monkeypatch):
    student = randomised_student()
    mel = torch.randn(5, 8, 4)
    whole = student.generate(mel, generator=torch.Generator().manual_seed(6))
    # Buffers of two items only fit: groups of 2, 2 and 1.
    per_item = prepare_flow(student.flows[0]).bytes_per_sample(torch.float32) * 4 * 16
    monkeypatch.setattr(flow_inference, "PASS_BYTES", 2 * per_item)
    sizes = []
    original = flow_inference.PreparedFlow.__call__

    def spy(self, x, cond, excitation=None):
        sizes.append(x.shape[0])
        return original(self, x, cond, excitation)

    monkeypatch.setattr(flow_inference.PreparedFlow, "__call__", spy)
    grouped = student.generate(mel, generator=torch.Generator().manual_seed(6))
    assert sizes == [2, 2, 2, 2, 1, 1]  # two flows per group
    torch.testing.assert_close(grouped, whole, rtol=0, atol=1e-6)


def test_generation_leaves_the_weights_and_checkpoint_layout_alone():
    student = randomised_student(speakers=["a", "b"])
    before = {name: tensor.clone() for name, tensor in student.state_dict().items()}
    student.generate(torch.randn(2, 8, 6), torch.tensor([0, 1]))
    after = student.state_dict()
    assert list(after) == list(before)
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def test_shipped_cpu_layout_generates_what_one_reference_pass_gives():
    """The student_cpu.yaml layout at the real 256-sample hop, in chunks, against `forward`."""
    config = student_layout("student_cpu.yaml")
    spec = FeatureSpec()
    torch.manual_seed(0)
    student = Student(config, spec).eval()
    with torch.no_grad():
        for flow in student.flows:
            flow.output.weight.normal_(0, 0.1)
    mel = torch.randn(2, spec.n_mels, 7) - 5.0
    audio = student.generate(mel, frames_per_chunk=3, generator=torch.Generator().manual_seed(4))
    z = sample_logistic((2, 7 * 256), torch.Generator().manual_seed(4))
    x, _, _ = student(z, mel)
    torch.testing.assert_close(audio, mulaw.expand(x).clamp(-1, 1), rtol=0, atol=1e-5)


def test_shipped_cpu_pitch_layout_generates_what_one_reference_pass_gives():
    """student_cpu_pitch.yaml (excitation and source) at the real hop, in chunks, against
    `forward`: the fused path with e and the windowed source equal the module path."""
    config = student_layout("student_cpu_pitch.yaml")
    spec = FeatureSpec()
    torch.manual_seed(0)
    student = Student(config, spec).eval()
    with torch.no_grad():
        for flow in student.flows:
            flow.output.weight.normal_(0, 0.1)
            flow.excitation.weight.normal_(0, 0.1)
    t = torch.arange(7 * 256) / spec.sample_rate
    mel = spec.extract(0.3 * torch.sin(2 * torch.pi * 140 * t)).expand(2, -1, -1)
    f0 = torch.tensor([[140.0] * 5 + [0.0] * 2, [0.0] + [150.0] * 6])
    phase = torch.tensor([0.3, 2.0], dtype=torch.float64)
    options = dict(frames_per_chunk=3, f0=f0, phase=phase)
    audio = student.generate(mel, generator=torch.Generator().manual_seed(4), **options)
    z = sample_logistic((2, 7 * 256), torch.Generator().manual_seed(4))
    x, _, _ = student(z, mel, None, f0, phase)
    torch.testing.assert_close(audio, mulaw.expand(x).clamp(-1, 1), rtol=0, atol=1e-5)
