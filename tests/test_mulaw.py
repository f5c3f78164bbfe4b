import math

import torch

from wavenet import mulaw


def test_compress_and_expand_are_inverse():
    audio = torch.linspace(-1, 1, 10001)
    torch.testing.assert_close(mulaw.expand(mulaw.compress(audio)), audio, atol=1e-6, rtol=0)


def test_compress_formula_at_known_points():
    assert mulaw.compress(torch.tensor([0.0])).item() == 0.0
    torch.testing.assert_close(mulaw.compress(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]))
    expected = math.log(1 + 255 * 0.5) / math.log(256)
    assert abs(mulaw.compress(torch.tensor([0.5])).item() - expected) < 1e-6


def test_round_trip_error_is_within_one_quantisation_step():
    audio = torch.linspace(-1, 1, 20001)
    decoded = mulaw.decode(mulaw.encode(audio))
    # On the companded axis every class is BIN_WIDTH wide: the error is at most half of it.
    companded_error = (mulaw.compress(decoded) - mulaw.compress(audio)).abs().max()
    assert companded_error <= mulaw.BIN_WIDTH / 2 + 1e-5
    # On the linear axis the step grows with amplitude: compare with the local step size.
    classes = mulaw.encode(audio)
    step_up = mulaw.decode((classes + 1).clamp(max=255)) - decoded
    step_down = decoded - mulaw.decode((classes - 1).clamp(min=0))
    assert ((decoded - audio).abs() <= torch.maximum(step_up, step_down)).all()


def test_classes_cover_0_to_255_and_match_companded_quantisation():
    audio = torch.linspace(-1, 1, 5001)
    classes = mulaw.encode(audio)
    assert classes.min() == 0 and classes.max() == 255 and classes.dtype == torch.long
    assert torch.equal(classes, mulaw.quantize_companded(mulaw.compress(audio)))


def test_class_centres_are_the_companded_decoded_values():
    classes = torch.arange(256)
    torch.testing.assert_close(
        mulaw.class_centres(classes), mulaw.compress(mulaw.decode(classes)), atol=1e-6, rtol=0
    )
    assert torch.equal(mulaw.quantize_companded(mulaw.class_centres(classes)), classes)


def test_out_of_range_audio_is_clipped():
    assert mulaw.encode(torch.tensor([1.5, -3.0])).tolist() == [255, 0]
