"""Training on a lent GPU machine, rehearsed on the CPU: the corpus packed as FLAC, the device
script training within its budget, its state back within the device tool's limits, unpacked,
and resumed here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from conftest import DATA

from training.carry import CarryError, carry_order, pack_corpus
from training.dataset_format import read_manifest
from training.prepare import PrepareConfig
from training.state import load_state
from training.train_teacher import train_teacher

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs"
CORPUS = DATA / "corpus"
# What the device tool brings back from $OUT (its README's limits).
MAX_FILES, MAX_FILE_BYTES, MAX_FOLDERS_DOWN = 8, 16 * 2**20, 2
NAME = re.compile(r"[A-Za-z0-9._-]+")


def config_file(path: Path, base: str, **overrides) -> Path:
    config = {**yaml.safe_load((CONFIGS / base).read_text()), **overrides}
    path.write_text(yaml.safe_dump(config))
    return path


def split_of(prepared: Path) -> dict[str, str]:
    return {entry.id: entry.split for entry in read_manifest(prepared)[2]}


@pytest.mark.parametrize(
    ("cpu_file", "gpu_file"),
    [
        ("teacher.yaml", "teacher_gpu.yaml"),
        ("teacher_pitch.yaml", "teacher_pitch_gpu.yaml"),
        ("teacher_pitch_lean.yaml", "teacher_pitch_lean_gpu.yaml"),
    ],
)
def test_teacher_gpu_config_resumes_teacher_yaml_runs(cpu_file, gpu_file):
    cpu = yaml.safe_load((CONFIGS / cpu_file).read_text())
    gpu = yaml.safe_load((CONFIGS / gpu_file).read_text())
    kept = ["model", "steps", "lr", "warmup_steps", "lr_half_life", "min_lr", "adam_betas"]
    kept += ["grad_clip", "ema_decay", "quantize_input", "seed"]
    assert {key: gpu[key] for key in kept} == {key: cpu[key] for key in kept}
    assert gpu["num_workers"] == 0  # `timeout`'s SIGTERM must reach the training process alone


def test_packed_flac_holds_the_corpus_samples_exactly(prepared_corpus, tmp_path):
    summary = pack_corpus(CORPUS, prepared_corpus, tmp_path / "carry", max_bytes=2**30)
    assert summary.utterances == summary.of_utterances == len(split_of(prepared_corpus))
    for wav in sorted(CORPUS.rglob("*.wav")):
        flac = tmp_path / "carry" / "corpus" / wav.relative_to(CORPUS).with_suffix(".flac")
        original, rate = soundfile.read(wav, dtype="int32")
        carried, carried_rate = soundfile.read(flac, dtype="int32")
        assert carried_rate == rate and np.array_equal(carried, original), flac
        assert flac.with_suffix(".txt").read_text() == wav.with_suffix(".txt").read_text()


def test_a_budget_keeps_the_held_out_set_and_deals_out_the_rest(prepared_corpus, tmp_path):
    entries = read_manifest(prepared_corpus)[2]
    order = carry_order(entries, seed=0)
    held_out = sorted(e.id for e in entries if e.split == "val")
    assert [e.id for e in order[: len(held_out)]] == held_out
    speakers = sorted({e.speaker for e in entries})
    first_round = order[len(held_out) : len(held_out) + len(speakers)]
    assert sorted(e.speaker for e in first_round) == speakers
    assert [e.id for e in carry_order(list(reversed(entries)), seed=0)] == [e.id for e in order]

    whole = pack_corpus(CORPUS, prepared_corpus, tmp_path / "all", max_bytes=2**30)
    part = pack_corpus(CORPUS, prepared_corpus, tmp_path / "part", whole.flac_bytes * 2 // 3)
    assert whole.val == part.val == len(held_out)
    assert len(speakers) + part.val <= part.utterances < whole.utterances
    assert part.flac_bytes <= whole.flac_bytes * 2 // 3
    carried = sorted(path.stem for path in (tmp_path / "part").rglob("*.flac"))
    assert carried == sorted(e.id for e in order[: part.utterances])
    config = yaml.safe_load((tmp_path / "part" / "prepare.yaml").read_text())
    assert config["val_ids"] == held_out and config["val_fraction"] == 0.25
    # The device tracks F0 with this machine's tracker settings.
    assert config["pitch"] == json.loads((prepared_corpus / "pitch_spec.json").read_text())
    assert PrepareConfig.model_validate(config).pitch.model_dump() == config["pitch"]
    with pytest.raises(CarryError, match="held-out"):
        pack_corpus(CORPUS, prepared_corpus, tmp_path / "none", max_bytes=1000)


@pytest.mark.timeout(400)
def test_device_script_trains_in_its_budget_and_its_state_resumes_here(prepared_corpus, tmp_path):
    # A pitch-aware teacher, as the default: it trains on the F0 the device tracks.
    cpu_config = config_file(tmp_path / "cpu.yaml", "tiny_pitch.yaml", sample_every=0)
    # The "GPU" config takes other batches, as teacher_pitch_gpu.yaml does teacher_pitch.yaml's.
    gpu_config = config_file(
        tmp_path / "gpu.yaml",
        "tiny_pitch.yaml",
        sample_every=0,
        batch_size=8,
        checkpoint_every=1000,
    )
    runs = tmp_path / "runs"
    train_teacher(prepared_corpus, runs / "teacher", cpu_config, steps=4)  # the committed state
    whole = pack_corpus(CORPUS, prepared_corpus, tmp_path / "all", max_bytes=2**30)
    pack_corpus(CORPUS, prepared_corpus, tmp_path / "carry", whole.flac_bytes * 2 // 3)

    out, work = tmp_path / "out", tmp_path / "work"
    env = {
        **os.environ,
        **dict(OUT=str(out), WORK=str(work), RUNS=str(runs), CARRY=str(tmp_path / "carry")),
        **dict(WHEELS=str(tmp_path / "no-wheels"), PYTHON=sys.executable, PYTHONPATH=str(ROOT)),
        **dict(DEVICE="cpu", STAGES="teacher", TEACHER_CONFIG=str(gpu_config)),
        # A step limit ends the stage, not the budget: on a busy machine a short budget could
        # run out before the first step. (The loop's SIGTERM path is tested with the teacher.)
        **dict(TEACHER_STEPS="7", BUDGET_S="240", GRACE_S="5", PACK_S="3", MIN_STAGE_S="5"),
        **dict(PART_BYTES="200000", OMP_NUM_THREADS="1"),  # several parts, as for a teacher
    }
    script = ROOT / "scripts" / "device-train.sh"
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "teacher: step 4 -> 7 (exit 0)" in result.stdout

    # The device prepared the carried subset into this machine's features and split.
    device_split, here_split = split_of(work / "prepared"), split_of(prepared_corpus)
    assert device_split == {utt_id: here_split[utt_id] for utt_id in device_split}
    assert {u for u, s in device_split.items() if s == "val"} == {
        u for u, s in here_split.items() if s == "val"
    }
    for name in ("feature_spec.json", "pitch_spec.json"):
        assert (work / "prepared" / name).read_text() == (prepared_corpus / name).read_text()
    for utt_id in device_split:
        for kind in ("audio", "mel", "f0"):
            carried = np.load(work / "prepared" / kind / f"{utt_id}.npy")
            assert np.array_equal(carried, np.load(prepared_corpus / kind / f"{utt_id}.npy"))

    files = [path for path in out.rglob("*") if path.is_file()]
    assert len(files) <= MAX_FILES
    assert len([p for p in files if p.name.startswith("teacher.tar.")]) >= 2
    for path in files:
        parts = path.relative_to(out).parts
        assert len(parts) - 1 <= MAX_FOLDERS_DOWN and all(NAME.fullmatch(p) for p in parts)
        assert path.stat().st_size <= MAX_FILE_BYTES

    unpack = ROOT / "scripts" / "device-unpack.sh"
    subprocess.run([str(unpack), str(out), str(runs)], env=env, check=True, capture_output=True)
    step = load_state(runs / "teacher" / "checkpoint")["step"]
    assert step == 7
    assert yaml.safe_load((runs / "teacher" / "config.yaml").read_text())["batch_size"] == 8
    metrics = [json.loads(line) for line in (runs / "teacher" / "metrics.jsonl").open()]
    logged = [record["step"] for record in metrics]
    assert logged[0] == 4 and logged == sorted(set(logged)) and logged[-1] <= step

    # Back here: the whole corpus and the CPU config continue the same run.
    train_teacher(prepared_corpus, runs / "teacher", cpu_config, steps=step + 2, resume=True)
    assert load_state(runs / "teacher" / "checkpoint")["step"] == step + 2
