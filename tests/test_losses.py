import itertools
import math

import pytest
import torch
from conftest import tiny_student, tiny_teacher

from training.metrics import log_mel_l1
from wavenet import losses, mulaw
from wavenet.features import FeatureSpec


def brute_force_cross_entropy(mu: float, s: float, teacher_logits: torch.Tensor) -> float:
    """Integrate the logistic density against the teacher's extended density by quadrature."""
    log_q = torch.log_softmax(teacher_logits.double(), dim=0) - math.log(mulaw.BIN_WIDTH)
    edges = losses.bin_edges(dtype=torch.float64)

    def density(x):
        a = (x - mu) / s
        return torch.sigmoid(a) * torch.sigmoid(-a) / s

    def simpson(f, lo, hi, n=400):
        x = torch.linspace(lo, hi, 2 * n + 1, dtype=torch.float64)
        y = f(x)
        h = (hi - lo) / (2 * n)
        return (h / 3 * (y[0] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum() + y[-1])).item()

    total = 0.0
    for k in range(256):
        total -= log_q[k].item() * simpson(density, edges[k].item(), edges[k + 1].item(), n=40)
    reach = 60 * s
    low, high = edges[0].item(), edges[-1].item()

    def outside_high(x):
        return density(x) * (losses.OUTSIDE_COST + losses.OUTSIDE_SLOPE * (x - high))

    def outside_low(x):
        return density(x) * (losses.OUTSIDE_COST + losses.OUTSIDE_SLOPE * (low - x))

    if mu + reach > high:
        total += simpson(outside_high, high, max(mu, high) + reach, n=20000)
    if mu - reach < low:
        total += simpson(outside_low, min(mu, low) - reach, low, n=20000)
    return total


@pytest.mark.parametrize(
    "mu, s", [(0.0, 0.05), (0.5, 0.01), (0.95, 0.2), (-0.99, 0.03), (0.2, 1.0), (1.2, 0.1)]
)
def test_exact_cross_entropy_equals_numerical_integral(mu, s):
    logits = torch.randn(256, generator=torch.Generator().manual_seed(0)) * 3
    exact = losses.exact_cross_entropy(
        torch.tensor([[mu]], dtype=torch.float64),
        torch.tensor([[math.log(s)]], dtype=torch.float64),
        logits.view(1, 256, 1),
    )
    assert exact.shape == (1, 1)
    assert abs(exact.item() - brute_force_cross_entropy(mu, s, logits)) < 1e-4


def test_bin_probabilities_sum_to_one_with_the_outside_mass():
    mu = torch.tensor([[0.0, 0.9, -1.0, 0.3]])
    log_s = torch.log(torch.tensor([[0.01, 0.2, 0.05, 2.0]]))
    probs, below, above = losses.logistic_bin_probabilities(mu, log_s)
    assert probs.shape == (1, 256, 4) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(1) + below + above, torch.ones(1, 4))


@pytest.mark.parametrize("mu, s", [(0.0, 0.05), (0.3, 0.004), (-0.6, 0.02), (0.99, 0.01)])
def test_kl_is_nonnegative_when_the_teacher_is_the_discretised_student(mu, s):
    mu_t = torch.tensor([[mu]], dtype=torch.float64)
    log_s = torch.tensor([[math.log(s)]], dtype=torch.float64)
    probs, _, _ = losses.logistic_bin_probabilities(mu_t, log_s)
    result = losses.kl_distillation(mu_t, log_s, torch.log(probs.clamp(min=1e-300)))
    assert result.kl.item() >= -1e-4
    torch.testing.assert_close(result.kl, result.cross_entropy - result.entropy)


def test_kl_is_nonnegative_for_any_teacher():
    generator = torch.Generator().manual_seed(1)
    mu = torch.rand(4, 64, generator=generator, dtype=torch.float64) * 2.4 - 1.2
    log_s = torch.rand(4, 64, generator=generator, dtype=torch.float64) * 9 - 7
    logits = torch.randn(4, 256, 64, generator=generator, dtype=torch.float64) * 4
    per_step = losses.exact_cross_entropy(mu, log_s, logits) - losses.student_entropy(log_s)
    assert per_step.min().item() >= -1e-4


def test_kl_grows_as_s_widens_past_the_edges():
    logits = torch.randn(1, 256, 1, generator=torch.Generator().manual_seed(2))
    scales = torch.logspace(math.log10(0.2), 6, 60)
    kls = [
        losses.kl_distillation(torch.tensor([[0.9]]), s.log().view(1, 1), logits).kl.item()
        for s in scales
    ]
    assert all(later > earlier for earlier, later in itertools.pairwise(kls))
    # Folding the outside mass into open outer bins would give KL = -1.7 here.
    assert kls[0] > 0


@pytest.mark.parametrize("s", [0.003, 0.1, 1.0, 7.0])
def test_student_entropy_equals_the_numerical_entropy_of_the_logistic(s):
    """-integral p log p by the trapezoid rule over +-40 scales, with p the logistic density
    written out here, against the analytic entropy the KL uses."""
    x = torch.linspace(-40 * s, 40 * s, 400_001, dtype=torch.float64)
    a = x / s
    log_p = -a - 2 * torch.nn.functional.softplus(-a) - math.log(s)
    numerical = torch.trapezoid(-log_p.exp() * log_p, x).item()
    analytic = losses.student_entropy(torch.tensor([[math.log(s)]], dtype=torch.float64))
    assert analytic.shape == (1, 1)
    assert analytic.item() == pytest.approx(numerical, abs=1e-6)


@pytest.mark.parametrize("mu", [0.0, 0.3, -0.5, 0.5])
def test_kl_is_near_zero_against_the_discretised_student_well_inside_the_edges(mu):
    """A teacher that is the student's own bin masses differs from it only by the bins'
    flatness: KL ~ D^2 / (72 s^2) = 3.4e-4 at s = 0.05. An entropy or cross-entropy off by
    a constant would show here."""
    mu_t = torch.tensor([[mu]], dtype=torch.float64)
    log_s = torch.tensor([[math.log(0.05)]], dtype=torch.float64)
    probs, _, _ = losses.logistic_bin_probabilities(mu_t, log_s)
    kl = losses.kl_distillation(mu_t, log_s, torch.log(probs.clamp(min=1e-300))).kl.item()
    assert 0 <= kl < 1e-3


def test_contrastive_term_is_minus_gamma_times_the_kl_to_a_uniform_teacher():
    """Against a uniform teacher the density is 1 / (256 D) on the bins, so for a student well
    inside them KL = log(256 D) - (log s + 2) in closed form."""
    mu = torch.tensor([[0.0, 0.2, -0.4]], dtype=torch.float64)
    s = torch.tensor([[0.05, 0.02, 0.03]], dtype=torch.float64)
    uniform = torch.zeros(1, 256, 3, dtype=torch.float64)
    closed_form = (math.log(256 * mulaw.BIN_WIDTH) - (s.log() + 2)).mean()
    term = losses.contrastive_loss(mu, s.log(), uniform, gamma=0.3)
    assert term.item() == pytest.approx(-0.3 * closed_form.item(), rel=1e-6)


def test_power_loss_is_zero_for_equal_power_and_falls_as_level_matches():
    t = torch.arange(4096) / 16000
    real = 0.5 * torch.sin(2 * math.pi * 440 * t).unsqueeze(0)
    assert losses.power_loss(real, real).item() == 0.0
    whisper, closer = 0.1 * real, 0.4 * real
    assert losses.power_loss(whisper, real) > losses.power_loss(closer, real) > 0


def test_multi_resolution_stft_loss_orders_by_similarity():
    generator = torch.Generator().manual_seed(4)
    real = torch.randn(2, 8192, generator=generator) * 0.1
    near = real + torch.randn(2, 8192, generator=generator) * 0.01
    far = torch.randn(2, 8192, generator=generator) * 0.1
    assert losses.multi_resolution_stft_loss(real, real).item() < 1e-3
    assert losses.multi_resolution_stft_loss(near, real) < losses.multi_resolution_stft_loss(
        far, real
    )


def test_log_mel_loss_is_the_metric_and_charges_noise_in_silence():
    spec = FeatureSpec()
    t = torch.arange(8192) / spec.sample_rate
    voiced = 0.3 * torch.sin(2 * math.pi * 220 * t) * (t < 0.25)  # a tone, then silence
    real = voiced.unsqueeze(0)
    assert losses.log_mel_loss(real, real, spec).item() == 0.0
    # The training term and the evaluation metric are one distance.
    noise = 0.01 * torch.randn(1, 8192, generator=torch.Generator().manual_seed(0))
    noisy = real + noise
    metric = log_mel_l1(real[0].numpy(), noisy[0].numpy(), spec)
    assert losses.log_mel_loss(noisy, real, spec).item() == pytest.approx(metric, rel=1e-5)
    # Noise in the silence costs more the louder it is, and its gradient pushes it down.
    quieter = real + 0.1 * noise
    assert losses.log_mel_loss(quieter, real, spec) < losses.log_mel_loss(noisy, real, spec)
    generated = noisy.clone().requires_grad_(True)
    losses.log_mel_loss(generated, real, spec).backward()
    silence = t >= 0.3
    step = -generated.grad[0, silence]
    assert float((step * noise[0, silence]).sum()) < 0, "descent shrinks the added noise"


class TinyClassifier(torch.nn.Module):
    """Two conv layers standing in for a speech classifier's feature extractor."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = torch.nn.Conv1d(1, 4, 9, stride=4)
        self.second = torch.nn.Conv1d(4, 6, 9, stride=4)

    def features(self, audio):
        first = torch.relu(self.first(audio.unsqueeze(1)))
        return [first, torch.relu(self.second(first))]


def test_perceptual_loss_compares_gram_matrices_and_freezes_the_classifier():
    classifier = TinyClassifier().requires_grad_(False)
    generator = torch.Generator().manual_seed(5)
    real = torch.randn(2, 2048, generator=generator) * 0.1
    assert losses.perceptual_loss(classifier, real, real).item() == 0.0
    generated = (real * 3).requires_grad_(True)
    loss = losses.perceptual_loss(classifier, generated, real)
    loss.backward()
    assert loss.item() > 0 and generated.grad.abs().sum() > 0
    assert all(p.grad is None for p in classifier.parameters())
    gram = losses.gram_matrix(torch.ones(1, 3, 10))
    torch.testing.assert_close(gram, torch.full((1, 3, 3), 1 / 3))


def test_kl_gradient_flows_to_the_student_through_the_teacher_input():
    teacher = tiny_teacher().requires_grad_(False)
    student = tiny_student(randomise=True)
    mel = torch.randn(2, 8, 4)
    noise = torch.rand(2, 64, generator=torch.Generator().manual_seed(6)).logit()

    def student_gradients(detach_teacher_input: bool):
        student.zero_grad()
        x, mu, log_s = student(noise, mel)
        teacher_input = x.detach() if detach_teacher_input else x
        logits = teacher.forward_companded(teacher_input, mel)
        losses.kl_distillation(mu, log_s, logits).kl.backward()
        return [p.grad.clone() for p in student.parameters() if p.grad is not None]

    through = student_gradients(False)
    without = student_gradients(True)
    assert len(through) == len(list(student.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(through, without, strict=True))
    assert all(p.grad is None for p in teacher.parameters())
