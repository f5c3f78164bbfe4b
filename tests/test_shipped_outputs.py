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
    """The F0 given to the pitch-aware student and teacher (1, frames): 120 Hz rising 2 Hz a
    frame, every fifth frame unvoiced; and its phase (1,)."""
    f0 = 120.0 + 2.0 * torch.arange(frames, dtype=torch.float32)
    f0[::5] = 0.0
    return {"f0": f0.unsqueeze(0), "phase": torch.tensor([0.5], dtype=torch.float64)}


def test_the_shipped_student_generates_what_it_always_has(student, inputs):
    mel, _ = inputs
    generator = torch.Generator().manual_seed(0)
    audio = student.generate(mel, slt(student), generator=generator, **pitch())
    expected = (
        74.36671835073253,
        2.2147219377849092,
        [-0.0289981197565794, 0.00935412384569645, 0.0029872457962483168,
         0.13033267855644226, 0.00945507176220417],
    )  # fmt: skip
    assert_fingerprint(audio, expected, "generate")


def test_the_shipped_students_flow_is_what_it_always_was(student, inputs):
    mel, _ = inputs
    z = sample_logistic((1, 20 * 256), torch.Generator().manual_seed(1))
    with torch.no_grad():
        x, mu_tot, log_s_tot = student(z, mel, slt(student), **pitch())
    expected = {
        "x": (
            1211.8532064383617,
            362.2404524401192,
            [-0.3835721015930176, 0.2199580818414688, 0.10212614387273788,
             0.6369970440864563, 0.2212628722190857],
        ),
        "mu_tot": (
            1211.8609717117724,
            362.2483160951527,
            [-0.38367959856987, 0.21992458403110504, 0.10224200040102005,
             0.6368367075920105, 0.22109182178974152],
        ),
        "log_s_tot": (
            47179.775106430054,
            434753.5334926635,
            [-9.268627166748047, -9.209468841552734, -9.209468841552734,
             -9.209468841552734, -9.209468841552734],
        ),
    }  # fmt: skip
    for name, output in (("x", x), ("mu_tot", mu_tot), ("log_s_tot", log_s_tot)):
        assert_fingerprint(output, expected[name], name)


def test_the_shipped_teacher_predicts_and_samples_what_it_always_has(inputs):
    teacher = load_model(DEFAULT / "teacher")
    assert teacher.config.excitation is not None, "the default teacher is pitch-aware"
    mel, audio = inputs
    with torch.no_grad():
        logits = teacher(audio[:, :512], mel[..., :2], slt(teacher), **pitch(2))
    expected_logits = (
        621323.1712315988,
        6637466.973191978,
        [-4.817427158355713, -2.5220460891723633, -2.1670713424682617,
         -2.2515294551849365, -1.4675071239471436],
    )  # fmt: skip
    assert_fingerprint(logits, expected_logits, "teacher logits")
    # Incremental (Fast WaveNet) sampling of one frame: 256 steps through the queues, the
    # excitation taken one sample at a time.
    made = teacher.generate(
        mel[..., :1], slt(teacher), generator=torch.Generator().manual_seed(0), **pitch(1)
    )
    assert mulaw.encode(made)[0, :16].tolist() == [
        58, 180, 187, 174, 131, 55, 65, 71, 76, 143, 85, 104, 73, 133, 166, 177
    ]  # fmt: skip
    expected_made = (
        1.875365506784874,
        0.043298116481455366,
        [-0.07665091753005981, -0.005235972348600626, 0.002544997725635767,
         0.002544997725635767, -0.004473080392926931],
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
            25934.055479787872,
            17831.714882350112,
            [-0.49625247716903687, 0.11000758409500122, -0.07946568727493286,
             0.2705869972705841, 0.030811183154582977],
        ),
        (
            31504.66122518765,
            26784.76539086108,
            [0.3169749081134796, 0.3963039517402649, 0.6872679591178894,
             0.7344249486923218, 0.8731542229652405],
        ),
        (
            32861.54529659101,
            31810.62211468944,
            [-0.14443407952785492, 0.996172308921814, -0.45829224586486816,
             -0.36189401149749756, 0.3044764995574951],
        ),
    ]  # fmt: skip
    assert len(features) == len(expected_features)
    for index, (feature, expected) in enumerate(zip(features, expected_features, strict=True)):
        assert_fingerprint(feature, expected, f"feature {index}")
    expected_units = (
        639.7871643938124,
        2407.4209945960406,
        [-2.417741537094116, 0.44482600688934326, -3.0673673152923584,
         -2.418459892272949, -1.6223740577697754],
    )  # fmt: skip
    assert_fingerprint(units, expected_units, "unit logits")
    expected_speakers = (
        122.21979184821248,
        542.7806587824073,
        [-3.1945323944091797, -3.0194218158721924, -2.8108901977539062,
         -2.553032875061035, -2.6021509170532227],
    )  # fmt: skip
    assert_fingerprint(speakers, expected_speakers, "speaker logits")
