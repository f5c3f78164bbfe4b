import json

import pytest
import torch
from conftest import tiny_teacher

from wavenet import CheckpointError, Teacher, load_model, save_model


def test_round_trip_gives_identical_outputs(tmp_path):
    teacher = tiny_teacher(seed=3)
    directory = save_model(teacher, tmp_path / "ckpt", extra={"step": 12})
    loaded = load_model(directory)
    assert isinstance(loaded, Teacher) and not loaded.training
    assert loaded.spec == teacher.spec and loaded.config == teacher.config
    audio = torch.rand(2, 64) * 2 - 1
    mel = teacher.spec.extract(audio)
    speaker = torch.tensor([1, 0])
    assert torch.equal(loaded(audio, mel, speaker), teacher(audio, mel, speaker))
    document = json.loads((directory / "config.json").read_text())
    assert document["kind"] == "teacher" and document["extra"] == {"step": 12}
    assert document["spec"]["hop_length"] == 16


def test_weights_file_is_safetensors_not_pickle(tmp_path):
    directory = save_model(tiny_teacher(), tmp_path / "ckpt")
    raw = (directory / "model.safetensors").read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])
    assert "input.weight" in header and header["__metadata__"]["kind"] == "teacher"
    assert not raw.startswith(b"\x80") and raw[:2] != b"PK"


def test_saving_again_replaces_files_and_leaves_no_temporaries(tmp_path):
    save_model(tiny_teacher(seed=1), tmp_path / "ckpt")
    save_model(tiny_teacher(seed=2), tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    reloaded = load_model(tmp_path / "ckpt")
    assert torch.equal(reloaded.input.weight, tiny_teacher(seed=2).input.weight)


def test_truncated_weights_name_the_file(teacher_checkpoint):
    weights = teacher_checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_model(teacher_checkpoint)


def test_garbage_weights_name_the_file(teacher_checkpoint):
    (teacher_checkpoint / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_model(teacher_checkpoint)


def test_weights_of_another_architecture_are_a_mismatch(tmp_path, teacher_checkpoint):
    other = save_model(tiny_teacher(residual_channels=8), tmp_path / "other")
    (teacher_checkpoint / "model.safetensors").write_bytes(
        (other / "model.safetensors").read_bytes()
    )
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: does not match config\.json.*shape"
    ):
        load_model(teacher_checkpoint)


def test_config_with_fewer_layers_reports_unexpected_tensors(teacher_checkpoint):
    path = teacher_checkpoint / "config.json"
    document = json.loads(path.read_text())
    document["config"]["layers"] = 4
    path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        load_model(teacher_checkpoint)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"kind": "teacher"}', "expected an object"),
        ('{"kind": "vocoder9000", "config": {}, "spec": {}}', "unknown model kind 'vocoder9000'"),
        ('{"kind": "teacher", "config": {"layrs": 3}, "spec": {}}', "invalid layrs"),
        ('{"kind": "teacher", "config": {}, "spec": {"hop_length": -1}}', "invalid hop_length"),
    ],
)
def test_bad_config_json_names_the_file_and_problem(teacher_checkpoint, content, message):
    (teacher_checkpoint / "config.json").write_text(content)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_model(teacher_checkpoint)
    assert "config.json" in str(caught.value)


def test_missing_files_are_named(tmp_path, teacher_checkpoint):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (teacher_checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        load_model(teacher_checkpoint)
    (teacher_checkpoint / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_model(teacher_checkpoint)
