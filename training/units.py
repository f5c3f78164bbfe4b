"""Pseudo-phone units: k-means clusters of MFCC frames, the classifier's frame targets when a
corpus has no phone alignments (as in the first iteration of HuBERT).

MFCCs are computed from the prepared log-mels (a DCT over the mel axis, plus deltas), so the
units sit exactly on the FeatureSpec's frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from sklearn.cluster import MiniBatchKMeans

__all__ = ["UnitModel", "fit_units", "load_units", "mfcc_from_mel", "save_units", "unit_names"]


def mfcc_from_mel(mel: torch.Tensor, n_mfcc: int = 13) -> torch.Tensor:
    """MFCCs with deltas from natural-log mels: (n_mels, F) -> (3 * n_mfcc, F).

    c = DCT-II (orthonormal) of the log-mel over the mel axis, keeping n_mfcc coefficients;
    deltas and delta-deltas give each frame its local slope, which separates transitions.
    """
    dct = AF.create_dct(n_mfcc, mel.shape[0], norm="ortho")  # (n_mels, n_mfcc)
    cepstra = dct.T @ mel.float()
    deltas = AF.compute_deltas(cepstra.unsqueeze(0))[0]
    accelerations = AF.compute_deltas(deltas.unsqueeze(0))[0]
    return torch.cat([cepstra, deltas, accelerations])


@dataclass
class UnitModel:
    """Cluster centres in standardised MFCC space, with the standardisation.

    Attributes:
        mean (np.ndarray): Feature means (D,).
        std (np.ndarray): Feature standard deviations (D,).
        centres (np.ndarray): Cluster centres (n_units, D).
    """

    mean: np.ndarray
    std: np.ndarray
    centres: np.ndarray

    def assign(self, mel: torch.Tensor) -> torch.Tensor:
        """Nearest unit of every frame: mel (n_mels, F) -> (F,) int64."""
        features = (mfcc_from_mel(mel).T.numpy() - self.mean) / self.std
        distances = ((features[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return torch.from_numpy(distances.argmin(axis=1).astype(np.int64))


def fit_units(
    mels: list[torch.Tensor], n_units: int = 64, seed: int = 0, max_frames: int = 200_000
) -> UnitModel:
    """k-means over the MFCC frames of `mels` (each (n_mels, F)), seeded and deterministic.

    Raises:
        ValueError: when there are fewer frames than units.
    """
    frames = np.concatenate([mfcc_from_mel(mel).T.numpy() for mel in mels])
    if len(frames) < n_units:
        raise ValueError(f"{len(frames)} frames cannot make {n_units} units")
    rng = np.random.default_rng(seed)
    if len(frames) > max_frames:
        frames = frames[rng.choice(len(frames), max_frames, replace=False)]
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-5
    kmeans = MiniBatchKMeans(n_clusters=n_units, random_state=seed, n_init=3, batch_size=4096)
    kmeans.fit((frames - mean) / std)
    return UnitModel(mean, std, kmeans.cluster_centers_.astype(np.float32))


def unit_names(count: int) -> list[str]:
    """Labels of `count` pseudo-phone clusters: unit0, unit1, ..."""
    return [f"unit{index}" for index in range(count)]


def save_units(model: UnitModel, path: str | Path) -> None:
    """Write the unit model as an .npz of plain float32 arrays (mean, std, centres), atomically."""
    import io

    from wavenet.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    arrays = {"mean": model.mean, "std": model.std, "centres": model.centres}
    np.savez(buffer, **{name: np.asarray(a, dtype=np.float32) for name, a in arrays.items()})
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_units(path: str | Path) -> UnitModel:
    """Read a unit model written by `save_units` (no pickle)."""
    with np.load(path, allow_pickle=False) as arrays:
        return UnitModel(arrays["mean"], arrays["std"], arrays["centres"])
