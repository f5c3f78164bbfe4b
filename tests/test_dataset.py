"""Training crops from a prepared corpus: frame alignment, padding, determinism, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.dataset import (
    SegmentCrops,
    crop,
    load_prepared,
    make_loader,
    validation_items,
    validation_utterances,
)
from training.dataset_format import DatasetError, read_manifest


def test_load_prepared_splits_the_manifest(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    spec, speakers, entries = read_manifest(prepared_corpus)
    assert corpus.spec == spec
    assert corpus.speakers == speakers
    assert {u.entry.id for u in corpus.train} == {e.id for e in entries if e.split == "train"}
    assert {u.entry.id for u in corpus.val} == {e.id for e in entries if e.split == "val"}
    assert corpus.val, "the fixture holds a quarter of its utterances out"


def test_load_prepared_rejects_a_folder_that_is_not_prepared(tmp_path):
    with pytest.raises(DatasetError, match=r"feature_spec\.json"):
        load_prepared(tmp_path)


def test_crop_takes_audio_and_mel_on_the_same_frame_boundaries(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    spec, utterance = corpus.spec, corpus.train[0]
    full_audio, full_mel = utterance.load(spec)
    start, frames = 7, 12
    audio, mel = crop(utterance, start, frames, spec)
    hop = spec.hop_length
    np.testing.assert_array_equal(audio, full_audio[start * hop : (start + frames) * hop])
    np.testing.assert_array_equal(mel, full_mel[:, start : start + frames])
    # Frames whose analysis window lies inside the crop are the crop's own features: the
    # audio and mel of a crop describe the same stretch of sound.
    margin = math.ceil((spec.n_fft - hop) / 2 / hop)
    own = spec.extract(torch.from_numpy(audio)).numpy()
    np.testing.assert_allclose(own[:, margin:-margin], mel[:, margin:-margin], atol=1e-3)


def test_crop_past_the_end_pads_with_silence(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    spec, utterance = corpus.spec, corpus.train[0]
    start = utterance.frames - 2
    audio, mel = crop(utterance, start, 5, spec)
    assert audio.shape == (5 * spec.hop_length,) and mel.shape == (spec.n_mels, 5)
    assert not audio[2 * spec.hop_length :].any()
    np.testing.assert_allclose(mel[:, 2:], math.log(spec.log_floor))


def test_crops_depend_only_on_seed_rank_step_and_slot(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    first = SegmentCrops(corpus.train, corpus.spec, 4, seed=3)
    again = SegmentCrops(corpus.train, corpus.spec, 4, seed=3)
    other_rank = SegmentCrops(corpus.train, corpus.spec, 4, seed=3, rank=1)
    keys = [(step, slot) for step in range(4) for slot in range(2)]
    for key in keys:
        np.testing.assert_array_equal(first[key]["audio"], again[key]["audio"])
    assert any(not np.array_equal(first[key]["audio"], other_rank[key]["audio"]) for key in keys), (
        "DDP ranks must draw different crops"
    )


def test_a_loader_started_midway_gives_the_batches_of_an_uninterrupted_one(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    crops = SegmentCrops(corpus.train, corpus.spec, 4, seed=0)
    whole = list(make_loader(crops, 0, 5, batch_size=3, num_workers=0))
    resumed = list(make_loader(crops, 3, 5, batch_size=3, num_workers=0))
    assert len(whole) == 5 and len(resumed) == 2
    for expected, batch in zip(whole[3:], resumed, strict=True):
        assert batch["audio"].shape == (3, 4 * corpus.spec.hop_length)
        assert batch["mel"].shape == (3, corpus.spec.n_mels, 4)
        assert batch["speaker"].dtype == torch.long
        for name in ("audio", "mel", "speaker"):
            torch.testing.assert_close(batch[name], expected[name])


def test_validation_items_are_the_held_out_utterances_unpadded(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    items = validation_items(corpus, count=2, frames=10_000)
    chosen = validation_utterances(corpus, count=2)
    assert len(items) == 2 and all(u in corpus.val for u in chosen)
    for item, utterance in zip(items, chosen, strict=True):
        assert item["mel"].shape == (1, corpus.spec.n_mels, utterance.frames)
        assert item["audio"].shape == (1, utterance.entry.samples)
        assert item["speaker"].tolist() == [utterance.speaker_id]
    # In speaker turns: the first items scored are as many speakers as there are items.
    assert [u.speaker for u in chosen] == sorted({u.speaker for u in corpus.val})[:2]
