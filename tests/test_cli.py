import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import write_tone

from wavenet.cli import get_parser, main

WAVENET = Path(sys.executable).parent / "wavenet"
ROOT = Path(__file__).resolve().parents[1]
SERVING_COMMANDS = ["synthesize", "info", "serve", "bench-service"]
TRAINING_COMMANDS = [
    "corpus",
    "prepare",
    "train-teacher",
    "train-classifier",
    "train-pitch",
    "distill",
    "evaluate",
    "spectrogram",
    "bench",
]
# The serving image: wavenet/ and service/ with the serve extras, no training/ and none of
# the train extras. A finder placed first makes each of these fail to import as if absent.
SERVING_IMAGE = """
import argparse, importlib.abc, json, sys

ABSENT = {"training", "yaml", "librosa", "matplotlib", "sklearn", "pesq", "pystoi", "tensorboard"}

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from wavenet.cli import get_parser, main

(commands,) = [a for a in get_parser()._actions if isinstance(a, argparse._SubParsersAction)]
print(json.dumps(list(commands.choices)))
main(sys.argv[1:])
"""


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommand names, in the order `--help` lists them."""
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(commands.choices)


def synthesize(*args: str) -> int:
    return main(["synthesize", *args])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("wavenet synthesize: error: ")
    return err


def test_copy_synthesis_of_an_audio_file(tmp_path, teacher_checkpoint):
    clip = write_tone(tmp_path / "in" / "tone.wav", seconds=0.05)  # 400 samples = 25 frames
    out = tmp_path / "out.wav"
    code = synthesize("--model", str(teacher_checkpoint), "--input", str(clip), "--out", str(out))
    assert code == 0
    audio, rate = soundfile.read(out)
    assert rate == 8000 and audio.shape == (25 * 16,)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def test_resamples_input_at_another_rate(tmp_path, teacher_checkpoint):
    clip = write_tone(tmp_path / "tone.flac", seconds=0.05, sample_rate=16000)
    out = tmp_path / "out.wav"
    assert (
        synthesize("--model", str(teacher_checkpoint), "--input", str(clip), "--out", str(out)) == 0
    )
    assert soundfile.info(out).frames == 25 * 16


def test_folder_in_folder_out_with_npy_and_speaker(tmp_path, teacher_checkpoint):
    inputs = tmp_path / "in"
    write_tone(inputs / "a.wav")
    write_tone(inputs / "nested" / "b.ogg", seconds=0.02)
    np.save(inputs / "c.npy", np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))
    (inputs / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    args = ["--model", str(teacher_checkpoint), "--input", str(inputs), "--out", str(out)]
    assert synthesize(*args, "--speaker", "bob") == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert written == ["a.wav", "c.wav", "nested/b.wav"]
    assert soundfile.info(out / "c.wav").frames == 3 * 16
    assert soundfile.info(out / "nested" / "b.wav").frames == 10 * 16


def test_missing_input_exits_2_with_one_line(tmp_path, teacher_checkpoint, capsys):
    out = tmp_path / "out.wav"
    code = synthesize(
        "--model", str(teacher_checkpoint), "--input", str(tmp_path / "no.wav"), "--out", str(out)
    )
    assert code == 2
    assert "no.wav: no such file" in one_line_error(capsys)
    assert not out.exists()


def test_unreadable_audio_exits_2_and_writes_nothing(tmp_path, teacher_checkpoint, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....this is not a wave file" * 10)
    out = tmp_path / "out.wav"
    assert (
        synthesize("--model", str(teacher_checkpoint), "--input", str(bad), "--out", str(out)) == 2
    )
    assert "bad.wav: not a readable wav, flac or ogg file" in one_line_error(capsys)
    assert not out.exists()


def test_mel_with_wrong_n_mels_exits_2(tmp_path, teacher_checkpoint, capsys):
    mel = tmp_path / "mel.npy"
    np.save(mel, np.zeros((80, 5), dtype=np.float32))
    out = tmp_path / "out.wav"
    assert (
        synthesize("--model", str(teacher_checkpoint), "--input", str(mel), "--out", str(out)) == 2
    )
    error = one_line_error(capsys)
    assert "mel.npy: wrong number of mel bands: expected n_mels=8, got 80 (shape (80, 5)" in error
    assert "transpose" not in error
    assert not out.exists()


def test_transposed_npy_mel_asks_about_the_transpose(tmp_path, teacher_checkpoint, capsys):
    mel = tmp_path / "mel.npy"
    np.save(mel, np.zeros((5, 8), dtype=np.float32))  # frames x n_mels
    out = tmp_path / "out.wav"
    assert (
        synthesize("--model", str(teacher_checkpoint), "--input", str(mel), "--out", str(out)) == 2
    )
    assert one_line_error(capsys).endswith("read as (n_mels, frames)); did you mean the transpose?")


def test_one_bad_file_in_a_folder_writes_nothing(tmp_path, teacher_checkpoint, capsys):
    inputs = tmp_path / "in"
    write_tone(inputs / "good.wav")
    np.save(inputs / "nan.npy", np.full((8, 4), np.nan, dtype=np.float32))
    out = tmp_path / "out"
    assert (
        synthesize("--model", str(teacher_checkpoint), "--input", str(inputs), "--out", str(out))
        == 2
    )
    assert "nan.npy" in one_line_error(capsys)
    assert not out.exists()


def test_unknown_device_exits_2_naming_the_choices(tmp_path, teacher_checkpoint, capsys):
    clip = write_tone(tmp_path / "tone.wav")
    args = ["--model", str(teacher_checkpoint), "--input", str(clip), "--out", str(tmp_path)]
    assert synthesize(*args, "--device", "tpu") == 2
    assert "--device tpu: not a device; use one of auto, cpu, cuda, cuda:N" in one_line_error(
        capsys
    )


def test_unknown_speaker_and_bad_checkpoint_exit_2(tmp_path, teacher_checkpoint, capsys):
    clip = write_tone(tmp_path / "tone.wav")
    out = tmp_path / "out.wav"
    args = ["--input", str(clip), "--out", str(out)]
    assert synthesize("--model", str(teacher_checkpoint), *args, "--speaker", "carol") == 2
    assert "unknown speaker 'carol'; valid speakers (id=name): 0=alice, 1=bob" in one_line_error(
        capsys
    )
    (teacher_checkpoint / "model.safetensors").write_bytes(b"junk")
    assert synthesize("--model", str(teacher_checkpoint), *args) == 2
    assert "model.safetensors" in one_line_error(capsys)
    assert not out.exists()


def test_installed_command_runs_and_reports_errors(tmp_path, teacher_checkpoint):
    clip = write_tone(tmp_path / "tone.wav")
    out = tmp_path / "out.wav"
    ok = subprocess.run(
        [
            str(WAVENET),
            "synthesize",
            "--model",
            str(teacher_checkpoint),
            "--input",
            str(clip),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert soundfile.info(out).frames == 25 * 16
    missing = subprocess.run(
        [
            str(WAVENET),
            "synthesize",
            "--model",
            str(tmp_path / "none"),
            "--input",
            str(clip),
            "--out",
            str(tmp_path / "x.wav"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "does not exist" in missing.stderr


@pytest.fixture
def pitch_checkpoints(tmp_path):
    from service_fixtures import save_pitch_checkpoints

    return save_pitch_checkpoints(tmp_path / "models")


def test_pitch_aware_copy_synthesis_tracks_the_input_and_shifts_it(tmp_path, pitch_checkpoints):
    from service_fixtures import voice

    from wavenet import load_model
    from wavenet.pitch import track_f0

    spec = load_model(pitch_checkpoints[0]).spec
    clip = tmp_path / "voice.wav"
    soundfile.write(clip, voice(150.0, 0.5), 8000, subtype="FLOAT")
    model = ["--model", str(pitch_checkpoints[0]), "--input", str(clip), "--temperature", "0"]
    tracks = {}
    for shift in ("0", "12"):
        out = tmp_path / f"shift{shift}.wav"
        assert synthesize(*model, "--out", str(out), "--pitch-shift", shift) == 0
        tracks[shift] = track_f0(soundfile.read(out, dtype="float32")[0], spec)
    source = track_f0(soundfile.read(clip, dtype="float32")[0], spec)
    voiced = (source > 0) & (tracks["0"] > 0) & (tracks["12"] > 0)
    assert voiced.mean() > 0.8
    assert np.median(tracks["0"][voiced] / source[voiced]) == pytest.approx(1.0, rel=0.01)
    assert np.median(tracks["12"][voiced] / source[voiced]) == pytest.approx(2.0, rel=0.03)


def test_a_npy_mel_takes_f0_from_a_file_or_else_the_predictor(tmp_path, pitch_checkpoints):
    from wavenet import load_model

    student, predictor = (load_model(path) for path in pitch_checkpoints)
    mel = torch.randn(16, 12, generator=torch.Generator().manual_seed(0)) - 4.0
    np.save(tmp_path / "mel.npy", mel.numpy())
    f0 = np.full(12, 210.0, dtype=np.float32)
    np.save(tmp_path / "f0.npy", f0)
    common = ["--model", str(pitch_checkpoints[0]), "--input", str(tmp_path / "mel.npy")]
    common += ["--temperature", "0"]
    given = ["--out", str(tmp_path / "given.wav"), "--f0", str(tmp_path / "f0.npy")]
    assert synthesize(*common, *given) == 0
    assert synthesize(*common, "--out", str(tmp_path / "predicted.wav")) == 0
    predicted = predictor.predict_f0(mel[None])
    for name, track in [("given", torch.from_numpy(f0)[None]), ("predicted", predicted)]:
        expected = student.generate(mel[None], temperature=0.0, f0=track)[0].numpy()
        written = soundfile.read(tmp_path / f"{name}.wav", dtype="float32")[0]
        np.testing.assert_allclose(written, expected, atol=1.5 / 32768)


def test_pitch_option_errors_exit_2_with_one_line(
    tmp_path, pitch_checkpoints, teacher_checkpoint, capsys
):
    np.save(tmp_path / "mel.npy", np.zeros((16, 6), dtype=np.float32) - 5)
    np.save(tmp_path / "short.npy", np.full(5, 100.0, dtype=np.float32))
    np.save(tmp_path / "nan.npy", np.full(6, np.nan, dtype=np.float32))
    clip = write_tone(tmp_path / "tone.wav")
    out = ["--out", str(tmp_path / "out.wav")]
    pitch = ["--model", str(pitch_checkpoints[0]), *out]
    cases = [
        ([*pitch, "--input", str(tmp_path / "mel.npy"), "--f0", str(tmp_path / "short.npy")],
         "short.npy has 5 values but the mel has 6 frames"),
        ([*pitch, "--input", str(tmp_path / "mel.npy"), "--f0", str(tmp_path / "nan.npy")],
         "nan.npy contains NaN or infinite values"),
        ([*pitch, "--input", str(clip), "--f0", str(tmp_path / "short.npy")],
         "--f0 goes with one .npy mel"),
        ([*pitch, "--input", str(tmp_path / "mel.npy"), "--pitch-model", str(tmp_path)],
         "give --f0 FILE.npy or --pitch-model DIR"),
        (["--model", str(teacher_checkpoint), *out, "--input", str(clip), "--pitch-shift", "2"],
         "the model is mel-only (not pitch-aware)"),
    ]  # fmt: skip
    for args, words in cases:
        assert synthesize(*args) == 2
        assert words in one_line_error(capsys)
    assert not (tmp_path / "out.wav").exists()
    with pytest.raises(SystemExit) as exited:
        synthesize(*pitch, "--input", str(clip), "--pitch-shift", "13")
    assert exited.value.code == 2 and "within -12 to 12 semitones" in capsys.readouterr().err


def test_info_reports_receptive_field(teacher_checkpoint, capsys):
    assert main(["info", "--model", str(teacher_checkpoint)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "teacher" and summary["receptive_field"] == 15
    assert summary["speakers"] == ["alice", "bob"] and summary["parameters"] > 0


def test_every_subcommand_is_listed_in_order():
    # The training commands sit between serve and bench-service, as they always have.
    expected = ["synthesize", "info", "serve", *TRAINING_COMMANDS, "bench-service"]
    assert subcommands(get_parser()) == expected


def test_serving_image_without_training_offers_the_serving_commands():
    def wavenet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", SERVING_IMAGE, *args],
            cwd=ROOT,  # so that this checkout's packages are the ones imported
            capture_output=True,
            text=True,
            timeout=120,
        )

    serve = wavenet("serve", "--help")
    assert serve.returncode == 0, serve.stderr
    offered, usage = serve.stdout.split("\n", 1)
    assert json.loads(offered) == SERVING_COMMANDS
    assert usage.startswith("usage: wavenet serve")
    prepare = wavenet("prepare", "corpus", "out")
    assert prepare.returncode == 2
    assert "invalid choice: 'prepare'" in prepare.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_training_command_errors_are_one_line_under_python_m(tmp_path):
    """torchrun runs `python -m wavenet.cli`: its CommandError is the one main() catches."""
    args = ["--model", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "s.png")]
    result = subprocess.run(
        [sys.executable, "-m", "wavenet.cli", "spectrogram", *args, "--device", "cuda"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "wavenet spectrogram: error: --device cuda was asked for, but no CUDA device is available "
        "(use cpu or auto)"
    )
