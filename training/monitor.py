"""What a run reports: RUN/metrics.jsonl, TensorBoard scalars, audio and spectrogram images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from wavenet.checkpoint import atomic_write_bytes
from wavenet.features import FeatureSpec

__all__ = ["METRICS_FILE", "RunLog", "read_metrics", "spectrogram_image"]

METRICS_FILE = "metrics.jsonl"


def read_metrics(run: str | Path) -> list[dict]:
    """The metrics lines of a run, in order; a torn last line (killed mid-write) is skipped."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def spectrogram_image(mels: list[torch.Tensor], floor: float) -> np.ndarray:
    """Log-mel spectrograms side by side as one grey-scale image, low frequencies at the bottom.

    Args:
        mels (list[Tensor]): Log-mels (n_mels, frames), e.g. [real, generated]; all share the
            first one's colour scale, so their levels can be compared by eye.
        floor (float): The feature log floor, the darkest value.

    Returns:
        ndarray: Image (n_mels, sum of frames + 2 per gap) in [0, 1], for `dataformats="HW"`.
    """
    top = float(mels[0].max())
    bottom = math.log(floor)
    panels = []
    for index, mel in enumerate(mels):
        scaled = ((mel.float().cpu().numpy() - bottom) / max(top - bottom, 1e-6)).clip(0, 1)
        if index:
            panels.append(np.ones((scaled.shape[0], 2), dtype=np.float32))  # white separator
        panels.append(scaled[::-1])
    return np.concatenate(panels, axis=1).astype(np.float32)


class RunLog:
    """Metrics of one run, written by rank 0 only.

    On resume, metrics lines and TensorBoard events after `start_step` (written by the run
    that was interrupted, after its last checkpoint) are dropped, so every step is logged once.

    Args:
        run (Path): The run directory.
        start_step (int): Step the run starts or resumes from.
        enabled (bool): False on ranks other than 0.
    """

    def __init__(self, run: Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = Path(run) / METRICS_FILE
        self.writer = None
        if not enabled:
            return
        kept = [r for r in read_metrics(run) if r.get("step", 0) <= start_step]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run) / "tensorboard"), purge_step=start_step)

    def scalars(self, step: int, values: dict[str, float | None]) -> None:
        """Append one metrics line and the same scalars to TensorBoard (under train/ and val/).

        A None value (a loss term switched off) is written as null in metrics.jsonl and left
        out of TensorBoard.
        """
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        for name, value in values.items():
            if value is None:
                continue
            group = "val" if name.startswith("val_") else "train"
            self.writer.add_scalar(f"{group}/{name.removeprefix('val_')}", value, step)

    def sample(
        self, step: int, real: torch.Tensor, generated: torch.Tensor, spec: FeatureSpec
    ) -> None:
        """Log a generated held-out clip, its real counterpart, and both spectrograms.

        Args:
            step (int): Training step.
            real (Tensor): Real waveform (T,).
            generated (Tensor): Generated waveform (T,).
            spec (FeatureSpec): For the spectrograms and the sample rate.
        """
        if not self.enabled:
            return
        rate = spec.sample_rate
        self.writer.add_audio("sample/generated", generated.view(1, -1).cpu(), step, rate)
        self.writer.add_audio("sample/real", real.view(1, -1).cpu(), step, rate)
        mels = [spec.extract(real.cpu()), spec.extract(generated.cpu())]
        image = spectrogram_image(mels, spec.log_floor)
        self.writer.add_image("sample/mel_real_vs_generated", image, step, dataformats="HW")

    def close(self) -> None:
        """Flush TensorBoard events to disk."""
        if self.writer is not None:
            self.writer.close()
