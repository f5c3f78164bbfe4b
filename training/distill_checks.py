"""Checks before distillation: the teacher and classifier fit the student and its data.

Run on the checkpoints' config.json alone, before any model is loaded or any file written.
Each frozen model is needed only when a term that is on runs it (`training.distill_terms`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from training.config import ConfigError
from training.dataset import PreparedCorpus
from training.distill_config import DistillConfig, terms_on
from wavenet.checkpoint import read_config
from wavenet.errors import CheckpointError
from wavenet.features import FeatureSpec
from wavenet.pitch import check_pitch_spec
from wavenet.teacher import TeacherConfig

__all__ = ["check_models", "needs_classifier", "needs_teacher"]


def _frozen_document(directory: str | Path, kind: str) -> tuple[FeatureSpec, dict]:
    """The feature spec and architecture config of a checkpoint of `kind` (config.json only)."""
    document = read_config(directory)
    if document["kind"] != kind:
        raise ConfigError(f"{directory}: a {document['kind']} checkpoint, expected a {kind}")
    try:
        return FeatureSpec.model_validate(document["spec"]), document["config"]
    except ValidationError as error:
        raise CheckpointError(f"{directory}: invalid feature spec ({error})") from None


def _differences(ours: FeatureSpec, theirs: FeatureSpec) -> str:
    mine, other = ours.model_dump(), theirs.model_dump()
    return ", ".join(
        f"{key} {other[key]} vs {mine[key]}" for key in mine if mine[key] != other[key]
    )


def check_models(
    config: DistillConfig,
    corpus: PreparedCorpus,
    teacher_dir: str | Path | None,
    classifier_dir: str | Path | None,
) -> None:
    """Check that the teacher and classifier fit the student and its data before any work.

    A teacher given is checked even when no term that is on runs it.

    Raises:
        ConfigError: when a term that is on needs a teacher and none is given, the
            teacher's FeatureSpec or speakers differ from the student's (which are the
            data's), the classifier's sample rate differs, the perceptual loss is on
            without a classifier, or a crop is too short for a spectral term's STFT.
        PitchSpecError: for a pitch-aware teacher and a corpus without F0 or with F0
            tracked otherwise than the teacher's was.
    """
    if teacher_dir is not None:
        _check_teacher(config, corpus, teacher_dir)
    elif needs_teacher(config):
        raise ConfigError(_missing_teacher(config))
    for term in terms_on(config):
        if term.needs_classifier and classifier_dir is None:
            raise ConfigError(f"loss_weights.{term.name} > 0 needs a classifier (--classifier)")
    if needs_classifier(config):
        classifier_spec, _ = _frozen_document(classifier_dir, "classifier")
        if classifier_spec.sample_rate != corpus.spec.sample_rate:
            raise ConfigError(
                f"{classifier_dir}: the classifier's sample rate {classifier_spec.sample_rate} "
                f"differs from the student's {corpus.spec.sample_rate}"
            )
    _check_stft_sizes(config, corpus.spec)


def _missing_teacher(config: DistillConfig) -> str:
    """Which weights that are on need the teacher that was not given, in one line."""
    wanting = [term.name for term in terms_on(config) if term.needs_teacher]
    weights = ", ".join(f"{name}={getattr(config.loss_weights, name)}" for name in wanting)
    verb = "needs" if len(wanting) == 1 else "need"
    return f"loss_weights {weights} {verb} a teacher: pass --teacher, or set those weights to 0"


def _check_teacher(config: DistillConfig, corpus: PreparedCorpus, teacher_dir: str | Path) -> None:
    """The teacher's features, speakers and F0 are the student's (the data's)."""
    teacher_spec, teacher_config = _frozen_document(teacher_dir, "teacher")
    if teacher_spec != corpus.spec:
        differences = _differences(corpus.spec, teacher_spec)
        raise ConfigError(
            f"{teacher_dir}: the teacher's FeatureSpec differs from the student's ({differences})"
        )
    speakers = list(teacher_config.get("speakers", []))
    if speakers != list(config.model.speakers):
        raise ConfigError(
            f"{teacher_dir}: the teacher's speakers {speakers} differ from the student's "
            f"(the data's) {list(config.model.speakers)}"
        )
    _check_teacher_pitch(teacher_config, corpus, teacher_dir)


def _check_teacher_pitch(document: dict, corpus: PreparedCorpus, teacher_dir) -> None:
    """A pitch-aware teacher reads the corpus's F0: it must exist and come from the tracker
    settings the teacher was trained with."""
    try:
        teacher = TeacherConfig.model_validate(document)
    except ValidationError as error:
        raise CheckpointError(f"{teacher_dir}: invalid teacher config ({error})") from None
    if teacher.excitation is not None:
        expected = teacher.pitch or corpus.pitch
        check_pitch_spec(expected, corpus.pitch, f"the teacher {teacher_dir}", str(corpus.root))


def _check_stft_sizes(config: DistillConfig, spec: FeatureSpec) -> None:
    """A centred STFT pads n_fft / 2 by reflection, which needs a longer crop than that."""
    sizes = [n_fft for term in terms_on(config) for n_fft in term.fft_sizes(config)]
    samples = spec.samples_for(config.segment_frames)
    if sizes and max(sizes) // 2 >= samples:
        raise ConfigError(
            f"segment_frames {config.segment_frames} gives {samples} samples, too few for an "
            f"STFT of n_fft {max(sizes)}; use longer crops or smaller n_fft"
        )


def needs_classifier(config: DistillConfig) -> bool:
    """Whether a term that is on needs the frozen classifier."""
    return any(term.needs_classifier for term in terms_on(config))


def needs_teacher(config: DistillConfig) -> bool:
    """Whether a term that is on runs the frozen teacher (during the KL warm-up too)."""
    return any(term.needs_teacher for term in terms_on(config))
