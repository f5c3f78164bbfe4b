"""Distillation losses, each a pure function of tensors.

Shapes: audio (B, T); per-step student parameters mu, log_s (B, T) in the companded domain;
teacher logits (B, 256, T). Losses are means over batch and time unless a docstring says
otherwise; "per step" functions return (B, T).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from wavenet import mulaw

__all__ = [
    "OUTSIDE_COST",
    "OUTSIDE_SLOPE",
    "STFT_RESOLUTIONS",
    "Distillation",
    "bin_edges",
    "contrastive_loss",
    "exact_cross_entropy",
    "gram_matrix",
    "kl_distillation",
    "logistic_bin_probabilities",
    "multi_resolution_stft_loss",
    "perceptual_loss",
    "power_loss",
    "student_entropy",
]

# The teacher's density is zero outside the outer bin edges. The student's mass there is
# charged as if the teacher had density 1e-7 at the edges, decaying by e per OUTSIDE_SLOPE^-1
# beyond them: a fixed cost alone is bounded, so a wide enough s would again buy entropy
# (log s grows without bound) for a bounded price; the distance term grows like s and wins.
OUTSIDE_COST = -math.log(1e-7)
OUTSIDE_SLOPE = 10.0

# (n_fft, hop) of the multi-resolution STFT loss: at 16 kHz, 32, 64 and 128 ms windows with
# a quarter-window hop; the short one resolves onsets, the long one pitch harmonics.
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


def bin_edges(device=None, dtype=torch.float32) -> torch.Tensor:
    """The 257 edges of the mu-law bins on the companded axis: e_k = -1 - D/2 + k D, D = 2/255."""
    k = torch.arange(mulaw.NUM_CLASSES + 1, device=device, dtype=dtype)
    return -1.0 - mulaw.BIN_WIDTH / 2 + k * mulaw.BIN_WIDTH


def student_entropy(log_s: torch.Tensor) -> torch.Tensor:
    """Entropy of Logistic(mu, s) per step: H_t = log s_t + 2 (nats). (B, T) -> (B, T)."""
    return log_s + 2.0


def logistic_bin_probabilities(
    mu: torch.Tensor, log_s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mass of Logistic(mu, s) in each mu-law bin and beyond the outer edges.

    P(k) = sigmoid((e_{k+1} - mu) / s) - sigmoid((e_k - mu) / s). Above a bin's midpoint the
    difference is taken of the upper tails instead, which keeps it accurate where both CDF
    values are close to 1.

    Returns:
        tuple: probs (B, 256, T), mass below e_0 (B, T), mass above e_256 (B, T).
    """
    edges = bin_edges(mu.device, mu.dtype).view(1, -1, 1)
    scaled = (edges - mu.unsqueeze(1)) * torch.exp(-log_s).unsqueeze(1)
    lower_tail = torch.sigmoid(scaled)
    upper_tail = torch.sigmoid(-scaled)
    from_below = lower_tail[:, 1:] - lower_tail[:, :-1]
    from_above = upper_tail[:, :-1] - upper_tail[:, 1:]
    centres = (edges[:, 1:] + edges[:, :-1]) / 2
    probs = torch.where(centres > mu.unsqueeze(1), from_above, from_below).clamp(min=0.0)
    return probs, lower_tail[:, 0], upper_tail[:, -1]


def exact_cross_entropy(
    mu: torch.Tensor,
    log_s: torch.Tensor,
    teacher_logits: torch.Tensor,
    outside_cost: float = OUTSIDE_COST,
    outside_slope: float = OUTSIDE_SLOPE,
) -> torch.Tensor:
    """H(P_S, P_T) per step, integrating the student's logistic over the teacher's bins.

    The categorical teacher is a piecewise-constant density p_T(k) / D on bin k (D = 2/255),
    so the cross-entropy has a closed form, no sampling:
        CE_t = -sum_k P_S(k) log(p_T(k) / D)
               + P_S(outside) * outside_cost + outside_slope * E_S[distance beyond the edges],
    the last two terms being the cross-entropy against the density exp(-outside_cost -
    outside_slope * d) that stands in for zero at distance d beyond the edges. For a logistic,
    E[(x - e)^+] = s * softplus((mu - e) / s).

    Args:
        mu (Tensor): Student location per step (B, T), companded domain.
        log_s (Tensor): Student log scale per step (B, T).
        teacher_logits (Tensor): Teacher logits (B, 256, T), given the student's own x_<t.
        outside_cost (float): Nats per unit of mass just beyond the edges.
        outside_slope (float): Extra nats per unit of mass per unit of distance beyond them.

    Returns:
        Tensor: Cross-entropy in nats per step (B, T).
    """
    probs, below, above = logistic_bin_probabilities(mu, log_s)
    log_density = F.log_softmax(teacher_logits.float(), dim=1) - math.log(mulaw.BIN_WIDTH)
    inside = -(probs * log_density).sum(dim=1)
    s = torch.exp(log_s)
    low, high = -1.0 - mulaw.BIN_WIDTH / 2, 1.0 + mulaw.BIN_WIDTH / 2
    distance = s * (F.softplus((mu - high) / s) + F.softplus((low - mu) / s))
    return inside + (below + above) * outside_cost + outside_slope * distance


class Distillation(NamedTuple):
    """The terms of probability density distillation, each a mean in nats per step."""

    kl: torch.Tensor
    cross_entropy: torch.Tensor
    entropy: torch.Tensor


def kl_distillation(
    mu: torch.Tensor, log_s: torch.Tensor, teacher_logits: torch.Tensor
) -> Distillation:
    """KL(P_S || P_T) = H(P_S, P_T) - H(P_S), averaged over batch and time.

    The teacher's logits must come from running it on the student's own sample x = g(z)
    (teacher forcing on the student's output), so that p_T(. | x_<t) matches P_S(x_t | z_<t).
    """
    cross_entropy = exact_cross_entropy(mu, log_s, teacher_logits).mean()
    entropy = student_entropy(log_s).mean()
    return Distillation(cross_entropy - entropy, cross_entropy, entropy)


def contrastive_loss(
    mu: torch.Tensor,
    log_s: torch.Tensor,
    teacher_logits_mismatched: torch.Tensor,
    gamma: float = 0.3,
) -> torch.Tensor:
    """The contrastive term -gamma * KL(P_S(c1) || P_T(c2)), averaged over batch and time.

    The paper's contrastive loss is KL(P_S(c1) || P_T(c1)) - gamma * KL(P_S(c1) || P_T(c2)):
    the student's sample made with conditioning c1 should fit the teacher given c1 and not the
    teacher given c2, another utterance's conditioning. Its first part is the KL term itself,
    so this function is only the second part, and a total of KL + this counts the matched KL
    once.

    Args:
        mu (Tensor): Student location per step (B, T), made with conditioning c1.
        log_s (Tensor): Student log scale per step (B, T).
        teacher_logits_mismatched (Tensor): Teacher logits (B, 256, T) on the student's own
            sample, given c2.
        gamma (float): The paper's 0.3.

    Returns:
        Tensor: Scalar, at most 0.
    """
    return -gamma * kl_distillation(mu, log_s, teacher_logits_mismatched).kl


def _power_spectrogram(
    audio: torch.Tensor, n_fft: int, hop_length: int, pad_mode: str = "reflect"
) -> torch.Tensor:
    """|STFT|^2 / sum(window^2): (B, T) -> (B, n_fft // 2 + 1, frames), per-sample power.
    Frames are centred on t * hop, the edges padded by n_fft / 2 (`pad_mode`: "reflect" or
    "constant" zeros)."""
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spectrum = torch.stft(
        audio, n_fft, hop_length, window=window, pad_mode=pad_mode, return_complex=True
    )
    return spectrum.abs().square() / window.square().sum()


def power_loss(
    generated: torch.Tensor, real: torch.Tensor, n_fft: int = 1024, hop_length: int = 256
) -> torch.Tensor:
    """|| mean_t |STFT(g(z))|^2 - mean_t |STFT(y)|^2 ||^2, averaged over frequency and batch.

    Time-averaged power spectra (the Parallel WaveNet paper's power loss): the student must
    put as much energy in each band as real speech does, or it whispers.

    Args:
        generated (Tensor): Student audio (B, T), linear domain.
        real (Tensor): The real audio of the same conditioning (B, T).
    """
    generated_power = _power_spectrogram(generated, n_fft, hop_length).mean(dim=-1)
    real_power = _power_spectrogram(real, n_fft, hop_length).mean(dim=-1)
    return (generated_power - real_power).square().mean()


def multi_resolution_stft_loss(
    generated: torch.Tensor,
    real: torch.Tensor,
    resolutions: tuple[tuple[int, int], ...] = STFT_RESOLUTIONS,
    eps: float = 1e-7,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Frame-wise spectral distance, averaged over resolutions (n_fft, hop):
        || |Y| - |G| ||_F / || |Y| ||_F  +  mean | log |Y| - log |G| |
    (spectral convergence plus log-magnitude L1), with |.| = sqrt(|STFT|^2 / sum(w^2) + eps)
    the STFT magnitude per unit of window power, Hann window of n_fft samples, frames centred
    on t * hop:

        pad n_fft/2 | audio (T samples)                  | pad n_fft/2
        frame 0 centred on sample 0, frame k on k * hop, the last on (T // hop) * hop

    The training loss and the evaluation metric (`training.metrics`) are this one function.

    Args:
        generated (Tensor): Student audio (B, T) or (T,).
        real (Tensor): Real audio, the same shape.
        resolutions (tuple): (n_fft, hop) pairs.
        eps (float): Power floor, so silence has a finite log.
        pad_mode (str): The edges: "reflect" (then T must exceed the largest n_fft / 2) or
            "constant" (zeros: any T).

    Returns:
        Tensor: Scalar; 0 for identical audio.
    """
    total = generated.new_zeros(())
    for n_fft, hop_length in resolutions:
        generated_mag = (_power_spectrogram(generated, n_fft, hop_length, pad_mode) + eps).sqrt()
        real_mag = (_power_spectrogram(real, n_fft, hop_length, pad_mode) + eps).sqrt()
        convergence = torch.linalg.norm(real_mag - generated_mag) / torch.linalg.norm(real_mag)
        log_l1 = (real_mag.log() - generated_mag.log()).abs().mean()
        total = total + convergence + log_l1
    return total / len(resolutions)


def log_mel_loss(generated: torch.Tensor, real: torch.Tensor, spec) -> torch.Tensor:
    """mean_{m,f} | log mel(y)[m, f] - log mel(g(z))[m, f] |: the L1 distance of the two
    log-mel spectrograms (natural log), both from `spec.extract`, the features the student
    is conditioned on. The training term and the evaluation metric
    (`training.metrics.log_mel_l1`) are this one function.

    The mel's log floor (`spec.log_floor`) bounds what silence costs: where the real audio
    is below it, energy the student adds there costs its log above the floor.

    Args:
        generated (Tensor): Student audio (B, T).
        real (Tensor): The real audio of the same conditioning (B, T).
        spec (FeatureSpec): The features' definition.
    """
    return (spec.extract(real) - spec.extract(generated)).abs().mean()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Feature correlations over time: (B, C, T) -> (B, C, C), G = F F^T / (C T)."""
    _, channels, length = features.shape
    return features @ features.transpose(1, 2) / (channels * length)


def perceptual_loss(classifier, generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Style loss: sum over layers of mean (G(phi_l(g(z))) - G(phi_l(y)))^2.

    `classifier.features(audio (B, T)) -> list of (B, C_l, T_l)` gives the hidden activations
    of a frozen speech classifier; matching their Gram matrices asks the student's audio to
    have the real audio's feature statistics without asking for the same waveform.
    """
    with torch.no_grad():
        real_features = classifier.features(real)
    generated_features = classifier.features(generated)
    total = generated.new_zeros(())
    for fake, true in zip(generated_features, real_features, strict=True):
        total = total + (gram_matrix(fake) - gram_matrix(true)).square().mean()
    return total
