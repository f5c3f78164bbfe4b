"""The shipped checkpoints compute what they computed when they were trained.

Fingerprints of models/default (student, teacher, classifier) on fixed seeded inputs: the
sum of magnitudes, the sum of squares and a few samples of each output, recorded once. A
change to the model code that changes what a shipped checkpoint computes (a reordered
channel, a different padding, a renamed parameter loaded into the wrong place) fails here.
The tolerance is ~1e-6: ten times the spread between thread counts, far below any real change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wavenet import load_model, mulaw
from wavenet.student import sample_logistic

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"
TOLERANCE = dict(rtol=2e-6, atol=2e-6)


def fingerprint(output: torch.Tensor) -> tuple[float, float, list[float]]:
    """Sum of |x|, sum of x^2 and five evenly spaced samples of a tensor (in float64)."""
    values = output.detach().double().flatten()
    stride = max(1, values.numel() // 5)
    return float(values.abs().sum()), float(values.square().sum()), values[::stride][:5].tolist()


def assert_fingerprint(output: torch.Tensor, expected: tuple, name: str) -> None:
    got = fingerprint(output)
    for index, (value, wanted) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(
            torch.tensor(value, dtype=torch.float64),
            torch.tensor(wanted, dtype=torch.float64),
            **TOLERANCE,
            msg=lambda message, index=index: f"{name}, part {index}: {message}",
        )


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A log-mel-like input (1, 80, 20) and a waveform (1, 1000), from one seeded generator."""
    generator = torch.Generator().manual_seed(1234)
    mel = torch.randn(1, 80, 20, generator=generator) - 5.0
    audio = 0.1 * torch.randn(1, 1000, generator=generator)
    return mel, audio


@pytest.fixture(scope="module")
def student():
    return load_model(DEFAULT / "student")


def slt(model) -> torch.Tensor:
    return torch.tensor([model.config.speakers.index("slt")])


def pitch(frames: int = 20) -> dict[str, torch.Tensor]:
    """The student's F0 (1, frames): 120 Hz rising 2 Hz a frame, every fifth frame unvoiced;
    and its phase (1,)."""
    f0 = 120.0 + 2.0 * torch.arange(frames, dtype=torch.float32)
    f0[::5] = 0.0
    return {"f0": f0.unsqueeze(0), "phase": torch.tensor([0.5], dtype=torch.float64)}


def test_the_shipped_student_generates_what_it_always_has(student, inputs):
    mel, _ = inputs
    generator = torch.Generator().manual_seed(0)
    audio = student.generate(mel, slt(student), generator=generator, **pitch())
    expected = (
        72.29738795488674,
        2.0888640224937074,
        [-0.027911819517612457, 0.009438539855182171, 0.0027403957210481167,
         0.12643633782863617, 0.009257325902581215],
    )  # fmt: skip
    assert_fingerprint(audio, expected, "generate")


def test_the_shipped_students_flow_is_what_it_always_was(student, inputs):
    mel, _ = inputs
    z = sample_logistic((1, 20 * 256), torch.Generator().manual_seed(1))
    with torch.no_grad():
        x, mu_tot, log_s_tot = student(z, mel, slt(student), **pitch())
    expected = {
        "x": (
            1195.1796660802647,
            352.9396149240515,
            [-0.3775201737880707, 0.22110110521316528, 0.0955648273229599,
             0.6316860914230347, 0.2185770869255066],
        ),
        "mu_tot": (
            1195.1888668717147,
            352.94745578115766,
            [-0.37762829661369324, 0.2210676670074463, 0.09568050503730774,
             0.631525993347168, 0.2184063047170639],
        ),
        "log_s_tot": (
            47185.84511947632,
            434865.1204562365,
            [-9.262765884399414, -9.210968017578125, -9.210968017578125,
             -9.211247444152832, -9.210968017578125],
        ),
    }  # fmt: skip
    for name, output in (("x", x), ("mu_tot", mu_tot), ("log_s_tot", log_s_tot)):
        assert_fingerprint(output, expected[name], name)


def test_the_shipped_teacher_predicts_and_samples_what_it_always_has(inputs):
    teacher = load_model(DEFAULT / "teacher")
    mel, audio = inputs
    with torch.no_grad():
        logits = teacher(audio[:, :512], mel[..., :2], slt(teacher))
    expected_logits = (
        603491.1092319761,
        5816709.201596704,
        [-4.082291126251221, 0.6079534888267517, 0.7061477899551392,
         0.8606616854667664, -0.14026202261447906],
    )  # fmt: skip
    assert_fingerprint(logits, expected_logits, "teacher logits")
    # Incremental (Fast WaveNet) sampling of one frame: 256 steps through the queues.
    made = teacher.generate(mel[..., :1], slt(teacher), generator=torch.Generator().manual_seed(0))
    assert mulaw.encode(made)[0, :16].tolist() == [
        128, 180, 187, 174, 131, 105, 128, 71, 166, 143, 118, 104, 73, 185, 193, 177
    ]  # fmt: skip
    expected_made = (
        3.0876508099318016,
        0.14232851044380862,
        [8.621309098089114e-05, -0.005235972348600626, 0.002544997725635767,
         0.07665091753005981, 0.004115811549127102],
    )  # fmt: skip
    assert_fingerprint(made, expected_made, "teacher generate")


def test_the_shipped_classifier_features_and_logits_are_what_they_always_were(inputs):
    classifier = load_model(DEFAULT / "classifier")
    _, audio = inputs
    with torch.no_grad():
        features = classifier.features(audio)
        units, speakers = classifier(audio)
    expected_features = [
        (
            18730.115638246818,
            8922.301864709367,
            [-0.32296568155288696, -0.11914009600877762, -0.17355096340179443,
             -0.2436315268278122, -1.0610615015029907],
        ),
        (
            20671.262333647115,
            11668.530696678761,
            [0.09169125556945801, -0.2121323049068451, -0.14680957794189453,
             -0.1027737557888031, 0.016219988465309143],
        ),
        (
            17701.17535265768,
            9309.130328732746,
            [-0.028921067714691162, -0.5934418439865112, 0.02399558573961258,
             0.037056051194667816, 0.005930844694375992],
        ),
    ]  # fmt: skip
    assert len(features) == len(expected_features)
    for index, (feature, expected) in enumerate(zip(features, expected_features, strict=True)):
        assert_fingerprint(feature, expected, f"feature {index}")
    expected_units = (
        314.3985683247447,
        529.8279971758446,
        [-1.8024564981460571, 1.3138805627822876, 1.5504772663116455,
         -2.1339495182037354, -1.002577304840088],
    )  # fmt: skip
    assert_fingerprint(units, expected_units, "unit logits")
    expected_speakers = (
        6.399862058460712,
        11.659173837446854,
        [-0.11042692512273788, 2.0748038291931152, 2.236844539642334,
         -0.2395237684249878, -1.4898345470428467],
    )  # fmt: skip
    assert_fingerprint(speakers, expected_speakers, "speaker logits")
