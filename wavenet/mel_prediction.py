"""The mel that a harmonic-plus-noise synthesis will have, predicted at frame rate.

The harmonic fit and the noise envelope (`harmonic_response`, `mel_envelope`) each assume a
frame stationary over its window. The synthesis is not: amplitudes are linear between frame
centres and fade at voicing boundaries, and the noise crossfades between its frames' filters.
Predicted without synthesising (`analysis_window` gives the window's view of each):

    mel_i = ((sum_k A_eff,k,i^p R[:, k, i])^(2/p) + (c |N|_i^p)^(2/p))^(p/2)

(harmonics and noise are uncorrelated, so their powers add: exact for p = 2 bin by bin).

- Harmonics: the window sees harmonic k with the envelope e(n) = w(n) a_k(n). The magnitude
  sum of its spectrum is about peak x lobe width: sum_n e(n) = M1 sum w at the peak, and a
  width that grows as the envelope narrows, by (sum e^2 / sum w^2) / (sum e / sum w)^2 =
  M2 / M1^2 (a shorter envelope, a wider lobe). So A_eff^p = M1^p M2 / M1^2: exact for a
  steady amplitude, for any p, and exact for every envelope when p = 2 (Parseval).
- Noise: |N|_i from the noise magnitudes of the frames around it (`noise_smear`), applied per
  band to (sum_j W[m, j] S_j^p)^(1/p), and c per band: the mel of noise is a sum of a few
  Rayleigh magnitudes in the narrow bands, whose log is on average below the log of its mean,
  so c = exp(E log mel) / E mel (measured once on white noise, 0.92 to 0.99) makes the fit
  match the log-mel that extraction will give, as the log-mel target is.
"""

from __future__ import annotations

import torch

from wavenet import mel_envelope as env
from wavenet.analysis_window import noise_smear, window_moments
from wavenet.caching import tensor_cache
from wavenet.features import FeatureSpec
from wavenet.harmonic_response import BandedResponse

__all__ = ["noise_log_bias", "predicted_mel"]

BIAS_SEED = 0  # the white noise on which `noise_log_bias` is measured


@tensor_cache(8)
def noise_log_bias(spec: FeatureSpec) -> torch.Tensor:
    """c = exp(E log mel) / E mel per band (n_mels,) of white noise, from 4 x 256 frames."""
    noise = torch.randn(
        4, 256 * spec.hop_length, generator=torch.Generator().manual_seed(BIAS_SEED)
    )
    mel = env.linear_mel(spec.extract(noise), spec)[..., 8:-8].transpose(0, 1).flatten(1)
    return (mel.clamp(min=1e-30).log().mean(1).exp() / mel.mean(1)).float()


def predicted_mel(
    amplitudes: torch.Tensor,
    noise_level: torch.Tensor,
    f0: torch.Tensor,
    response: BandedResponse,
    spec: FeatureSpec,
) -> torch.Tensor:
    """The linear mel (B, n_mels, frames) of harmonic_sum(A) + filtered_noise(S), S^p
    interpolated between the bands' centroids from `noise_level`.

    Args:
        amplitudes (Tensor): A (B, K, frames), as for `harmonic_synthesis.harmonic_sum`.
        noise_level (Tensor): S^p at each band's centroid (B, n_mels, frames), as
            `mel_envelope.noise_level` reads it off a mel.
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced.
        response (BandedResponse): `harmonic_response` of the same f0 and K.
    """
    power = spec.power
    first, second = window_moments(amplitudes, f0 > 0, spec)
    effective = torch.where(first > 0, first.clamp(min=1e-30) ** (power - 2) * second, 0.0)
    harmonic = response.to_bands(effective)
    level = torch.einsum("mn,bnf->bmf", env.level_to_mel(spec).to(noise_level), noise_level)
    noise = noise_smear(level.clamp(min=0).pow(1 / power), spec)
    noise = noise.pow(power) * noise_log_bias(spec).to(noise).view(1, -1, 1)
    # Harmonics and noise are uncorrelated: their powers add.
    return (harmonic.pow(2 / power) + noise.pow(2 / power)).pow(power / 2)
