"""`wavenet evaluate` and its metrics: report rows, baseline, and what each metric measures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_teacher_config, write_tone

from training import metrics
from training.dataset import load_prepared
from training.evaluate import (
    evaluate,
    griffin_lim,
    load_clips,
    load_splits,
    markdown_table,
    teacher_nll,
)
from wavenet import Teacher, load_model, save_model
from wavenet.cli import main

METRICS = ("log_mel_l1", "mrstft", "pesq_wb", "stoi")


@pytest.fixture(scope="module")
def tiny_model(prepared_corpus, tmp_path_factory):
    """An untrained tiny teacher for the fixture corpus's features and speakers."""
    corpus = load_prepared(prepared_corpus)
    torch.manual_seed(0)
    teacher = Teacher(tiny_teacher_config(speakers=corpus.speakers), corpus.spec)
    return save_model(teacher, tmp_path_factory.mktemp("model") / "teacher")


@pytest.fixture(scope="module")
def real_clip(prepared_corpus):
    """The first held-out utterance: waveform (samples,) and log-mel (n_mels, frames)."""
    corpus = load_prepared(prepared_corpus)
    audio, mel = corpus.val[0].load(corpus.spec)
    return np.array(audio), torch.from_numpy(np.array(mel)), corpus.spec


def test_evaluate_writes_a_report_with_both_rows_and_finite_numbers(
    tiny_model, prepared_corpus, tmp_path, capsys
):
    out = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_model),
            "--data",
            str(prepared_corpus),
            "--out",
            str(out),
            "--max-seconds",
            "1",
            "--clips",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["split"] == "val" and report["kind"] == "teacher"
    assert report["nll_utterances"] == len(load_prepared(prepared_corpus).val)
    assert 7.0 < report["nll_bits_per_sample"] < 9.0, "an untrained teacher is near 8 bits"
    assert [row["system"] for row in report["rows"]] == [
        "teacher copy synthesis",
        "Griffin-Lim (32 it.)",
    ]
    assert len(report["clips"]) == 2 and all(clip["seconds"] > 0 for clip in report["clips"])
    for row in report["rows"]:  # each row is the mean of its per-clip scores
        per_clip = [clip["scores"][row["system"]]["log_mel_l1"] for clip in report["clips"]]
        assert row["log_mel_l1"] == pytest.approx(sum(per_clip) / len(per_clip))
    for row in report["rows"]:
        assert math.isfinite(row["log_mel_l1"]) and math.isfinite(row["mrstft"])
        for name in ("pesq_wb", "stoi"):
            # A metric is a finite number, or missing with a note saying why.
            label = name.split("_")[0].upper()
            assert (row[name] is not None and math.isfinite(row[name])) or any(
                note.startswith(f"{row['split']}: {label}") for note in report["notes"]
            ), (name, report["notes"])
    baseline, synthesis = report["rows"][1], report["rows"][0]
    assert baseline["log_mel_l1"] < synthesis["log_mel_l1"], "noise from an untrained model"
    table = capsys.readouterr().out
    header = "| split | system | NLL (bits/sample) | log-mel L1 | MR-STFT | PESQ-WB | STOI |"
    assert header in table and "| val | teacher copy synthesis |" in table
    assert report["splits"]["val"]["utterances"] == report["nll_utterances"]
    assert "the corpus has no unseen speaker" in " ".join(report["notes"])
    assert table == markdown_table(report) + "\n"


def test_evaluate_scores_seen_and_unseen_speakers_apart(prepared_with_unseen, tmp_path):
    data = prepared_with_unseen
    corpus = load_prepared(data)
    torch.manual_seed(0)
    teacher = Teacher(tiny_teacher_config(speakers=corpus.speakers), corpus.spec)
    model = save_model(teacher, tmp_path / "teacher")
    splits = load_splits(data, corpus.spec, corpus.speakers)
    assert list(splits) == ["val", "unseen"]
    assert {clip.id for clip in splits["unseen"]} == {u.entry.id for u in corpus.unseen}
    assert all(clip.speaker is None and clip.speaker_name == "slt" for clip in splits["unseen"])
    assert all(clip.speaker is not None for clip in splits["val"])
    report = evaluate(model, data, tmp_path / "report.json", max_seconds=1, clips=1)
    assert [(row["split"], row["system"]) for row in report["rows"]] == [
        ("val", "teacher copy synthesis"),
        ("val", "Griffin-Lim (32 it.)"),
        ("unseen", "teacher copy synthesis"),
        ("unseen", "Griffin-Lim (32 it.)"),
    ]
    unseen = report["splits"]["unseen"]
    assert (unseen["utterances"], unseen["speakers"]) == (3, ["slt"])
    assert unseen["nll_bits_per_sample"] == pytest.approx(
        teacher_nll(load_model(model), splits["unseen"], torch.device("cpu"))
    )
    assert report["splits"]["val"]["speakers"] == sorted({u.speaker for u in corpus.val})
    assert report["nll_bits_per_sample"] == report["splits"]["val"]["nll_bits_per_sample"]
    assert [clip["split"] for clip in report["clips"]] == ["val", "unseen"]
    table = markdown_table(report)
    assert "| unseen | teacher copy synthesis |" in table
    assert "- unseen: speakers kept out of training; 3 utterance(s) of slt" in table


def test_evaluate_scores_a_folder_of_audio_files(tiny_model, tmp_path):
    folder = tmp_path / "audio"
    write_tone(folder / "tone.wav", seconds=0.2, sample_rate=16000)
    out = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_model),
            "--data",
            str(folder),
            "--out",
            str(out),
            "--max-seconds",
            "0.5",
            "--clips",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["split"] == "folder" and report["clips"][0]["id"] == "tone"
    assert math.isfinite(report["nll_bits_per_sample"])


def test_evaluate_reports_a_missing_data_folder_in_one_line(tiny_model, tmp_path, capsys):
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_model),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "r.json"),
            "--device",
            "cpu",
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and str(tmp_path) in error


def test_chunked_nll_equals_one_pass_over_the_whole_clip(tiny_model, prepared_corpus):
    model = load_model(tiny_model)
    clips, split = load_clips(prepared_corpus, model.spec, model.config.speakers)
    assert split == "val" and clips[0].speaker is not None and clips[0].mel.shape[-1] > 40
    cpu = torch.device("cpu")
    whole = teacher_nll(model, clips[:1], cpu, chunk_frames=100_000)
    chunked = teacher_nll(model, clips[:1], cpu, chunk_frames=7)
    assert chunked == pytest.approx(whole, rel=1e-6)


def test_identical_audio_scores_perfectly(real_clip):
    audio, _, spec = real_clip
    assert metrics.log_mel_l1(audio, audio, spec) == 0.0
    assert metrics.multi_resolution_stft_distance(audio, audio, spec.sample_rate) == 0.0
    pesq, _ = metrics.pesq_wideband(audio, audio, spec.sample_rate)
    stoi, _ = metrics.stoi_score(audio, audio, spec.sample_rate)
    assert pesq > 4.5 and stoi == pytest.approx(1.0, abs=1e-6)


def test_griffin_lim_is_aligned_with_the_real_audio_and_beats_noise(real_clip):
    audio, mel, spec = real_clip
    resynthesis = griffin_lim(mel, spec)
    assert resynthesis.shape == audio.shape and resynthesis.dtype == np.float32
    noise = np.random.default_rng(0).normal(0, audio.std(), audio.shape).astype(np.float32)
    rate = spec.sample_rate
    good = {
        "log_mel_l1": metrics.log_mel_l1(audio, resynthesis, spec),
        "mrstft": metrics.multi_resolution_stft_distance(audio, resynthesis, rate),
        "pesq_wb": metrics.pesq_wideband(audio, resynthesis, rate)[0],
        "stoi": metrics.stoi_score(audio, resynthesis, rate)[0],
    }
    bad = {
        "log_mel_l1": metrics.log_mel_l1(audio, noise, spec),
        "mrstft": metrics.multi_resolution_stft_distance(audio, noise, rate),
        "pesq_wb": metrics.pesq_wideband(audio, noise, rate)[0],
        "stoi": metrics.stoi_score(audio, noise, rate)[0],
    }
    assert good["log_mel_l1"] < 0.3 and good["stoi"] > 0.8 and good["pesq_wb"] > 1.3, good
    assert good["log_mel_l1"] < bad["log_mel_l1"] and good["mrstft"] < bad["mrstft"]
    assert good["pesq_wb"] > bad["pesq_wb"] and good["stoi"] > bad["stoi"]
    # Half a hop early or late matches the real features worse than the aligned output.
    half = spec.hop_length // 2
    early = np.concatenate([resynthesis[half:], np.zeros(half, np.float32)])
    assert metrics.log_mel_l1(audio, early, spec) > good["log_mel_l1"]


def test_metrics_that_do_not_apply_say_why(real_clip):
    audio, _, spec = real_clip
    score, note = metrics.pesq_wideband(audio, audio, 8000)
    assert score is None and "16 kHz" in note
    short = audio[: spec.sample_rate // 10]
    assert metrics.pesq_wideband(short, short, spec.sample_rate)[0] is None
    score, note = metrics.stoi_score(short, short, spec.sample_rate)
    assert score is None and "384 ms" in note


def test_nll_bits_is_eight_for_a_uniform_prediction():
    classes = torch.randint(0, 256, (2, 50))
    assert float(metrics.nll_bits(torch.zeros(2, 256, 50), classes)) == pytest.approx(8.0)
    certain = torch.nn.functional.one_hot(classes, 256).permute(0, 2, 1).float() * 100
    assert float(metrics.nll_bits(certain, classes)) == pytest.approx(0.0, abs=1e-6)


def test_clips_are_scored_in_speaker_turns():
    from types import SimpleNamespace

    from training.dataset import speaker_turns

    items = [SimpleNamespace(speaker=s, n=n) for s, n in [("b", 1), ("b", 2), ("a", 1), ("c", 1)]]
    assert [(u.speaker, u.n) for u in speaker_turns(items)] == [
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("b", 2),
    ]
    assert speaker_turns([]) == []
