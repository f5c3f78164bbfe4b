"""WaveNet teacher, Parallel WaveNet student, and the pieces they share."""

from wavenet.checkpoint import load_model, save_model
from wavenet.classifier import Classifier, ClassifierConfig
from wavenet.errors import AudioError, CheckpointError
from wavenet.features import FeatureSpec
from wavenet.student import Student, StudentConfig
from wavenet.teacher import Teacher, TeacherConfig

__all__ = [
    "AudioError",
    "CheckpointError",
    "Classifier",
    "ClassifierConfig",
    "FeatureSpec",
    "Student",
    "StudentConfig",
    "Teacher",
    "TeacherConfig",
    "load_model",
    "save_model",
]
