"""Which prepared utterances are held out: seen speakers' held-out utterances, unseen speakers.

Two held-out splits measure two things. "val" holds out a share of the training speakers'
utterances: how well a model does on new sentences of voices it knows. "unseen" keeps whole
speakers out of training: how well it does on a voice it never heard, which is what a user
with their own recordings meets. Both decisions depend only on the kept utterances (their ids,
speakers and lengths) and the config, never on the order files were found in.
"""

from __future__ import annotations

import random

__all__ = [
    "MIN_UNSEEN_SPEAKERS",
    "MIN_UNSEEN_UTTERANCES",
    "SPLIT_DESCRIPTIONS",
    "held_out_ids",
    "unseen_speakers",
]

# What each split a report names measures ("train" and "folder" stand in when there is none).
SPLIT_DESCRIPTIONS = {
    "val": "held-out utterances of the training speakers",
    "unseen": "speakers kept out of training",
    "train": "training utterances (the corpus holds none of its speakers' out)",
    "folder": "audio files, speakers unknown to the model",
}

# With fewer speakers, keeping one out would leave one voice (or none) to train on.
MIN_UNSEEN_SPEAKERS = 3
# A speaker with fewer kept utterances gives too noisy a score, and a corpus of such small
# speakers (a test fixture) cannot spare one.
MIN_UNSEEN_UTTERANCES = 20


def unseen_speakers(
    seconds: dict[str, float], utterances: dict[str, int], named: list[str] | None
) -> list[str]:
    """The speakers kept out of training, sorted.

    Named speakers are kept out when the corpus has them; names it lacks are ignored, so a
    subset of a corpus (`training.carry`) prepared with the whole corpus's config keeps every
    speaker it has in training. When none are named (None), one speaker is picked: of those
    with at least MIN_UNSEEN_UTTERANCES kept utterances, the one with the least audio (ties
    by name), which costs training least; none when the corpus has fewer than
    MIN_UNSEEN_SPEAKERS speakers or no speaker has enough utterances. An empty list keeps
    every speaker in training.

    Args:
        seconds: Kept audio per speaker, in seconds.
        utterances: Kept utterances per speaker.
        named: The config's `unseen_speakers`.
    """
    if named is not None:
        return sorted(set(named) & set(seconds))
    if len(seconds) < MIN_UNSEEN_SPEAKERS:
        return []
    candidates = [name for name in seconds if utterances[name] >= MIN_UNSEEN_UTTERANCES]
    if not candidates:
        return []
    return [min(candidates, key=lambda name: (seconds[name], name))]


def held_out_ids(utterances: list[tuple[str, str]], fraction: float, seed: int) -> set[str]:
    """The ids of the held-out utterances: `fraction` of them, at least one when there are two.

    Each speaker's utterances are shuffled, then dealt out speaker by speaker, so the held-out
    set covers as many speakers as its size allows. Depends only on the ids and the seed.

    Args:
        utterances: (utterance id, speaker) of the training speakers' kept utterances.
        fraction: Share to hold out.
        seed: Seeds the shuffles.
    """
    if fraction <= 0 or len(utterances) < 2:
        return set()
    count = min(len(utterances) - 1, max(1, round(fraction * len(utterances))))
    rng = random.Random(seed)
    by_speaker: dict[str, list[str]] = {}
    for utt_id, speaker in sorted(utterances):
        by_speaker.setdefault(speaker, []).append(utt_id)
    queues = [by_speaker[speaker] for speaker in sorted(by_speaker)]
    rng.shuffle(queues)
    for queue in queues:
        rng.shuffle(queue)
    dealt = [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
    return set(dealt[:count])
