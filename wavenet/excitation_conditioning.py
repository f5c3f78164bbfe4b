"""The harmonic excitation as conditioning: what a pitch-aware teacher or flow adds to its gates.

A model with an `ExcitationSpec` builds e (B, 2H + 1, T) from F0 per frame and an initial
phase (`wavenet.excitation.excitation`) and adds U e to every gated unit, beside the mel and
speaker terms V c:

    z = tanh(W_f * x + V_f c + U_f e) * sigmoid(W_g * x + V_g c + U_g e)

U is one 1x1 convolution per stack (every layer's share stacked, as the mel projection is),
run at sample rate. It starts at zero, so a new pitch-aware model computes exactly what the
mel-only one would until training moves it. e depends on F0 and the phase only, never on the
audio or on a flow's noise z, so a flow's Jacobian keeps its diagonal and log-determinant.
"""

from __future__ import annotations

import torch
from torch import nn

from wavenet.excitation import ExcitationSpec, check_f0, excitation
from wavenet.features import FeatureSpec

__all__ = ["ExcitationProjection", "check_excitation", "pitch_excitation"]


class ExcitationProjection(nn.Conv1d):
    """U: e (B, 2H + 1, T) -> every layer's gate conditioning (B, out_channels, T), no bias
    (the mel projection has one), zero at initialisation.

    Args:
        spec (ExcitationSpec): Sets the input channels, 2H + 1.
        out_channels (int): Conditioning channels of the stack (layers * 2 * gate_channels).
    """

    def __init__(self, spec: ExcitationSpec, out_channels: int):
        super().__init__(spec.channels, out_channels, 1, bias=False)
        nn.init.zeros_(self.weight)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """e (B, 2H + 1, T) in any float dtype -> (B, out_channels, T) in the weight's."""
        return super().forward(e.to(self.weight.dtype))


def pitch_excitation(
    spec: FeatureSpec,
    excitation_spec: ExcitationSpec | None,
    f0: torch.Tensor | None,
    phase: torch.Tensor | None,
    frames: int | None = None,
    start: int = 0,
    stop: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A model's excitation for frames [start, stop) of `f0`, and the phase it ends on.

    Args:
        spec (FeatureSpec): The model's features (hop, sample rate, frame centres).
        excitation_spec (ExcitationSpec | None): The model's; None for a mel-only model.
        f0 (Tensor | None): F0 (B, frames) in Hz, 0 = unvoiced; the whole track.
        phase (Tensor | None): The phase before frame `start`'s first sample (B,), radians;
            None = 0 (at start 0: phi_0, drawn per item in training, seeded in serving).
        frames (int | None): Frames the mel has, which f0 must have too; None: unchecked.
        start (int): First frame of the window.
        stop (int | None): End frame (exclusive); None = all frames.

    Returns:
        tuple: e (B, 2H + 1, (stop - start) * hop) float32 and the final phase (B,)
        float64; (None, None) for a mel-only model.

    Raises:
        ValueError: naming the problem: f0 missing for a pitch-aware model or given to a
            mel-only one, f0 of the wrong shape or frame count, negative, NaN or above
            the excitation's f0_max, or a phase that is not (B,).
    """
    if excitation_spec is None:
        if f0 is not None or phase is not None:
            raise ValueError("this model has no excitation (mel only): it takes no f0 or phase")
        return None, None
    if f0 is None:
        raise ValueError("this model is pitch-aware: it needs f0 (B, frames), Hz, 0 = unvoiced")
    check_f0(f0, frames, excitation_spec.f0_max)
    if phase is None:
        phase = torch.zeros(f0.shape[0], dtype=torch.float64, device=f0.device)
    if phase.shape != (f0.shape[0],):
        raise ValueError(f"phase must be (B,) = ({f0.shape[0]},), got {tuple(phase.shape)}")
    return excitation(f0, spec, excitation_spec, phase, start, stop)


def check_excitation(e: torch.Tensor, spec: ExcitationSpec, batch: int, length: int) -> None:
    """Raise ValueError unless a prebuilt e is (batch, 2H + 1, >= length)."""
    if e.dim() != 3 or e.shape[:2] != (batch, spec.channels) or e.shape[-1] < length:
        raise ValueError(
            f"excitation must be ({batch}, {spec.channels}, >= {length}), got {tuple(e.shape)}"
        )
