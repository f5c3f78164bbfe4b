"""F0 and the held-out splits in training data: aligned f0 crops, old folders, unseen speakers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA

from training.dataset import (
    SegmentCrops,
    collate,
    crop_item,
    load_prepared,
    make_loader,
    validation_items,
)
from training.dataset_format import DatasetError
from training.prepare import prepare
from wavenet.pitch import PitchSpec


@pytest.fixture(scope="module")
def with_unseen(tmp_path_factory) -> Path:
    """The fixture corpus prepared with speaker slt kept out of training."""
    out = tmp_path_factory.mktemp("unseen")
    config = out / "prepare.yaml"
    config.write_text("unseen_speakers: [slt]\nval_fraction: 0.25\n")
    prepare(DATA / "corpus", out / "prepared", config)
    return out / "prepared"


def _without_f0(prepared: Path, out: Path) -> Path:
    """A copy of `prepared` as a version without F0 wrote it."""
    shutil.copytree(prepared, out)
    shutil.rmtree(out / "f0")
    (out / "pitch_spec.json").unlink()
    lines = []
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        del entry["f0"]
        lines.append(json.dumps(entry))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return out


def test_the_corpus_exposes_its_pitch_spec_and_f0(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    assert corpus.pitch == PitchSpec() and corpus.unseen == []
    for utterance in corpus.train + corpus.val:
        f0 = utterance.load_f0()
        assert f0.shape == (utterance.frames,) and f0.dtype == np.float32
        assert (f0 >= 0).all() and (f0 > 0).any()


def test_crops_carry_the_f0_of_their_own_frames(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    crops = SegmentCrops(corpus.train, corpus.spec, 9, seed=0)
    for key in [(step, slot) for step in range(4) for slot in range(2)]:
        utterance, start = crops.draw(*key)
        item = crops[key]
        np.testing.assert_array_equal(item["f0"], utterance.load_f0()[start : start + 9])
        assert item["mel"].shape[-1] == item["f0"].shape[0] == 9
    utterance = corpus.train[0]
    past_end = crop_item(utterance, utterance.frames - 2, 5, corpus.spec)
    np.testing.assert_array_equal(past_end["f0"][:2], utterance.load_f0()[-2:])
    assert not past_end["f0"][2:].any(), "padding past the end is unvoiced"
    (batch,) = make_loader(crops, 0, 1, batch_size=3, num_workers=0)
    assert batch["f0"].shape == (3, 9) and batch["mel"].shape[-1] == 9
    expected = np.stack([crops[(0, slot)]["f0"] for slot in range(3)])
    np.testing.assert_array_equal(batch["f0"].numpy(), expected)


def test_validation_items_carry_f0(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    items = validation_items(corpus, count=2, frames=20)
    for item, utterance in zip(items, corpus.val, strict=False):
        frames = item["mel"].shape[-1]
        assert item["f0"].shape == (1, frames)
        np.testing.assert_array_equal(item["f0"][0].numpy(), utterance.load_f0()[:frames])


def test_a_folder_prepared_without_f0_still_loads_for_training(prepared_corpus, tmp_path):
    old = _without_f0(prepared_corpus, tmp_path / "old")
    corpus = load_prepared(old)
    assert corpus.pitch is None
    assert len(corpus.train) == len(load_prepared(prepared_corpus).train)
    crops = SegmentCrops(corpus.train, corpus.spec, 4, seed=0)
    assert set(crops[(0, 0)]) == {"audio", "mel", "speaker"}
    assert set(validation_items(corpus, 1, 8)[0]) == {"audio", "mel", "speaker"}
    with pytest.raises(DatasetError, match="prepared without it"):
        corpus.train[0].load_f0()


def test_unseen_speakers_never_reach_training_or_seen_validation(with_unseen):
    corpus = load_prepared(with_unseen)
    assert corpus.speakers == ["awb", "kal16", "kal_diphone"]
    assert corpus.unseen_speakers == ["slt"] and len(corpus.unseen) == 3
    assert all(u.speaker == "slt" and u.speaker_id is None for u in corpus.unseen)
    assert all(u.speaker != "slt" for u in corpus.train + corpus.val)
    crops = SegmentCrops(corpus.train, corpus.spec, 4, seed=0)
    drawn = {crops.draw(step, slot)[0].speaker for step in range(50) for slot in range(4)}
    assert drawn == set(corpus.speakers)
    held_out = validation_items(corpus, count=100, frames=8)
    speakers = {int(item["speaker"]) for item in held_out}
    assert len(held_out) == len(corpus.val) and speakers <= {0, 1, 2}


def test_collate_stacks_every_array_field():
    items = [
        {"audio": np.zeros(8, np.float32), "f0": np.full(2, k, np.float32), "speaker": k}
        for k in range(3)
    ]
    batch = collate(items)
    assert batch["f0"].tolist() == [[0, 0], [1, 1], [2, 2]]
    assert batch["speaker"].tolist() == [0, 1, 2] and batch["audio"].shape == (3, 8)
