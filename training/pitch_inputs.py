"""F0 and phase for pitch-aware models in training: the corpus check and the per-crop phase.

A model with an excitation (`model.excitation`) is trained on the prepared corpus's F0: the
run refuses a corpus without F0 and records the corpus's tracker settings as `model.pitch`
(a file or a resumed run that names other settings is refused). Each crop's excitation
starts from its own phase phi_0, a pure function of (seed, rank, step, slot) like the crops
themselves, so a resumed run draws the phases an uninterrupted one would have; in a
distillation step the student and the teacher read the same one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from training.config import ConfigError
from training.dataset import PreparedCorpus
from training.run_config import RunConfigT
from wavenet.excitation import initial_phase
from wavenet.pitch import check_pitch_spec

__all__ = ["PHASE_STREAM", "crop_phases", "pitch_inputs", "with_corpus_pitch", "with_phases"]

PHASE_STREAM = 1  # keeps the phases' random stream apart from the crops' and the noise's


def with_corpus_pitch(
    config: RunConfigT, corpus: PreparedCorpus, source: str | Path | None
) -> RunConfigT:
    """`config` with `model.pitch` set to the corpus's PitchSpec when the model is pitch-aware
    (a mel-only model's config is returned unchanged).

    Raises:
        PitchSpecError: for a corpus prepared without F0, or a model.pitch in the config
            (or saved by the run being resumed) that differs from the corpus's.
        ConfigError: when the corpus's F0 range exceeds the excitation's f0_max.
    """
    model = config.model
    if model.excitation is None:
        return config
    where = f"{source or 'the config'} (model.excitation)"
    if corpus.pitch is None or model.pitch is not None:
        check_pitch_spec(model.pitch or corpus.pitch, corpus.pitch, where, str(corpus.root))
    try:
        pitched = type(model).model_validate({**model.model_dump(), "pitch": corpus.pitch})
    except ValidationError as error:
        raise ConfigError(f"{corpus.root}: {error.errors()[0]['msg']}") from None
    return config.model_copy(update={"model": pitched})


def crop_phases(batch_size: int, seed: int, rank: int, step: int) -> torch.Tensor:
    """phi_0 of each crop of a step (B,) float64, uniform in [0, 2 pi), a pure function of
    (seed, rank, step) and the crop's slot."""
    (word,) = np.random.SeedSequence([seed, rank, step, PHASE_STREAM]).generate_state(1)
    return initial_phase(batch_size, torch.Generator().manual_seed(int(word)))


def with_phases(batch: dict, seed: int, rank: int, step: int) -> dict:
    """The batch with each crop's phase ("phase" (B,) float64, on the batch's device)."""
    phase = crop_phases(batch["audio"].shape[0], seed, rank, step)
    return {**batch, "phase": phase.to(batch["audio"].device)}


def pitch_inputs(model_config, batch: dict) -> dict[str, torch.Tensor | None]:
    """The keyword inputs a model takes from a batch: {"f0", "phase"} for a pitch-aware one
    (phase None = 0 when the batch has none), {} for a mel-only one.

    Raises:
        ValueError: if a pitch-aware model meets a batch without F0.
    """
    if model_config.excitation is None:
        return {}
    if batch.get("f0") is None:
        raise ValueError("a pitch-aware model needs each crop's F0 (batch['f0'])")
    return {"f0": batch["f0"], "phase": batch.get("phase")}
