"""Distillation steps: the loss falls, the total's coefficients, switched-off terms are never
computed, c2 is another utterance, gradients reach the student (through the teacher's input)
and never the frozen models, warm-up, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from distill_fixtures import CONFIGS, config_file, save_frozen_models

from training import distributed
from training.bench import student_layout
from training.config import ConfigError
from training.dataset import load_prepared, make_loader, validation_items
from training.distill import DistillCrops, DistillJob, load_frozen, teacher_nll_warning, train_step
from training.distill_config import LossWeights, active_weights, resolve_distill_config
from training.distill_losses import distill_losses, held_out_kl, noise_for
from training.distill_terms import LOGGED_TERMS, TERMS, contrast_batch, contrast_partners
from training.launch import new_run
from training.loop import to_device
from wavenet import FeatureSpec, Student, mulaw
from wavenet.losses import kl_distillation

CPU = torch.device("cpu")
AUXILIARY = tuple(term.name for term in TERMS if term.name != "kl")


@pytest.fixture(scope="module")
def frozen(prepared_corpus, tmp_path_factory):
    """The fixture corpus, and a frozen tiny teacher and classifier for it."""
    corpus = load_prepared(prepared_corpus)
    teacher, classifier = save_frozen_models(corpus, tmp_path_factory.mktemp("frozen"))
    return corpus, load_frozen(teacher, CPU), load_frozen(classifier, CPU)


def make_run(frozen, tmp_path: Path, **overrides):
    """A distillation run of student_tiny.yaml (with overrides) and its job, in memory."""
    corpus, teacher, classifier = frozen
    config = resolve_distill_config(config_file(tmp_path, **overrides), corpus.speakers)
    torch.manual_seed(config.seed)
    student = Student(config.model, corpus.spec).train()
    run = new_run(config, corpus, distributed.Processes(0, 1, CPU), tmp_path, student)
    return run, DistillJob(teacher, classifier, tmp_path)


def train_batches(run, steps: int):
    crops = DistillCrops(run.corpus.train, run.corpus.spec, run.config.segment_frames, seed=0)
    for batch in make_loader(crops, 0, steps, run.config.batch_size, 0):
        yield to_device(batch, CPU, with_speaker=True)


def test_the_shipped_student_configs_hold_the_paper_and_the_lean_cpu_layouts():
    paper, lean = student_layout("student.yaml"), student_layout("student_cpu.yaml")
    assert paper.flow_layers == [10, 10, 10, 30] and paper.residual_channels == 64
    assert paper.kernel_size == lean.kernel_size == 3
    # The lean layout's budget: 10 s of audio 10x faster than real time on 2 cores means
    # 160k samples/s; at a quarter of a ~34 GFLOP/s peak that is about 0.05 MFLOP a sample.
    lean_flops = Student(lean, FeatureSpec()).flops_per_sample
    assert lean_flops <= 60_000
    assert lean_flops * 50 < Student(paper, FeatureSpec()).flops_per_sample
    for name in ("student.yaml", "student_cpu.yaml", "student_tiny.yaml"):
        config = resolve_distill_config(CONFIGS / name, ["a", "b"])
        assert config.model.speakers == ["a", "b"] and config.loss_weights.kl > 0


def test_a_few_steps_lower_the_total_loss_on_a_fixed_batch_and_noise(frozen, tmp_path):
    run, job = make_run(frozen, tmp_path, lr=0.003)
    corpus, teacher, classifier = frozen
    held_out = DistillCrops(corpus.val, corpus.spec, 4, seed=1)
    fixed = to_device(next(iter(make_loader(held_out, 0, 1, 2, 0))), CPU, True)
    z = noise_for(tuple(fixed["audio"].shape), seed=99, rank=0, step=0, device=CPU)
    weights = active_weights(run.config, step=10**6)
    assert set(weights) == {"kl", *AUXILIARY}, "student_tiny.yaml switches every term on"

    def total() -> float:
        with torch.no_grad():
            losses = distill_losses(run.model, teacher, classifier, fixed, z, weights, run.config)
        return float(sum(weights[name] * losses[name] for name in weights))

    before = total()
    for step, batch in enumerate(train_batches(run, 10)):
        record = train_step(run, job, batch, step)
        assert all(record[name] is not None for name in LOGGED_TERMS)
    after = total()
    assert after < before - 0.1, (before, after)


def test_each_term_enters_the_total_with_its_weight(frozen, tmp_path, monkeypatch):
    """d total / d term is the term's weight (the teacher terms at half of it, mid-ramp), and
    the KL's diagnostic columns are logged but not weighted."""
    run, job = make_run(frozen, tmp_path, kl_warmup={"spectral_steps": 0, "ramp_steps": 4})
    values = {
        name: torch.tensor(float(index + 2), requires_grad=True)
        for index, name in enumerate(LOGGED_TERMS)
    }
    monkeypatch.setattr("training.distill.distill_losses", lambda *args: dict(values))
    record = train_step(run, job, next(train_batches(run, 1)), step=1)
    configured = run.config.loss_weights.model_dump()
    expected_total = 0.0
    for term in TERMS:
        coefficient = configured[term.name] * (0.5 if term.needs_teacher else 1.0)
        assert values[term.name].grad.item() == pytest.approx(coefficient), term.name
        assert all(values[column].grad is None for column in term.columns)
        expected_total += coefficient * values[term.name].item()
    assert record["total"] == pytest.approx(expected_total)
    assert {name: record[name] for name in LOGGED_TERMS} == {
        name: value.item() for name, value in values.items()
    }
    assert list(LossWeights.model_fields) == [term.name for term in TERMS]


def test_the_total_counts_kl_c1_once_and_kl_c2_at_minus_gamma(frozen, tmp_path, spies):
    """The paper's KL(c1) - gamma KL(c2), with KL(c2) the student's sample scored by the
    teacher given the other crop's mel and speaker (another utterance)."""
    weights = {"kl": 1.0, **dict.fromkeys(AUXILIARY, 0.0), "contrastive": 1.0}
    run, job = make_run(frozen, tmp_path, loss_weights=weights, contrastive_gamma=0.3)
    _, teacher, _ = frozen
    batch = next(b for b in train_batches(run, 10) if b["utterance"][0] != b["utterance"][1])
    mel, speaker = batch["mel"], batch["speaker"]
    z = noise_for(tuple(batch["audio"].shape), run.config.seed, rank=0, step=0, device=CPU)
    with torch.no_grad():
        x, mu, log_s = run.model(z, mel, speaker)
        matched = kl_distillation(mu, log_s, teacher.forward_companded(x, mel, speaker)).kl
        swapped = teacher.forward_companded(x, mel.flip(0), speaker.flip(0))
        mismatched = kl_distillation(mu, log_s, swapped).kl
    calls = spies["teacher"].calls
    record = train_step(run, job, batch, step=0)
    assert spies["teacher"].calls - calls == 2
    assert record["kl"] == pytest.approx(matched.item(), rel=1e-5)
    assert record["contrastive"] == pytest.approx(-0.3 * mismatched.item(), rel=1e-5)
    assert record["total"] == pytest.approx((matched - 0.3 * mismatched).item(), rel=1e-5)
    # Two crops of one utterance are no contrast: the term is 0, the teacher runs once.
    same = {**batch, "utterance": batch["utterance"].new_zeros(2)}
    calls = spies["teacher"].calls
    losses = distill_losses(run.model, teacher, None, same, z, {"contrastive": 1.0}, run.config)
    assert losses == {"contrastive": 0.0} and spies["teacher"].calls == calls


def test_c2_is_the_whole_conditioning_of_another_utterance(prepared_corpus):
    assert contrast_partners(torch.tensor([7, 7, 3, 7])).tolist() == [2, 2, 3, 2]
    assert contrast_partners(torch.tensor([5, 5])).tolist() == [-1, -1]
    rows = torch.arange(4.0)
    batch = {
        "audio": rows[:, None],
        "mel": rows[:, None, None],
        "speaker": None,
        "f0": 10 * rows[:, None],
        "utterance": torch.tensor([4, 4, 1, 2]),
    }
    items, c2 = contrast_batch(batch)
    assert items.tolist() == [0, 1, 2, 3]
    assert c2["mel"].flatten().tolist() == [2, 2, 3, 0] and c2["speaker"] is None
    assert c2["f0"].flatten().tolist() == [20, 20, 30, 0]
    items, c2 = contrast_batch({**batch, "utterance": torch.tensor([4, 4, 4, 1])})
    assert items.tolist() == [0, 1, 2, 3] and c2["mel"].flatten().tolist() == [3, 3, 3, 0]
    items, _ = contrast_batch({**batch, "utterance": torch.zeros(4)})
    assert items.numel() == 0
    with pytest.raises(ValueError, match="utterance"):
        contrast_batch({k: v for k, v in batch.items() if k != "utterance"})
    corpus = load_prepared(prepared_corpus)
    crops = DistillCrops(corpus.train, corpus.spec, 4, seed=0)
    for key in [(0, 0), (0, 1), (3, 1)]:
        utterance, _ = crops.draw(*key)
        assert crops.utterances[crops[key]["utterance"]] is utterance


class Spy:
    """Counts calls of a real function or bound method and passes them through."""

    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


@pytest.fixture
def spies(frozen, monkeypatch):
    """Spies on the real teacher's forward_companded, classifier's features and torch.stft."""
    _, teacher, classifier = frozen
    found = {
        "teacher": Spy(teacher.forward_companded),
        "classifier": Spy(classifier.features),
        "stft": Spy(torch.stft),
    }
    monkeypatch.setattr(teacher, "forward_companded", found["teacher"])
    monkeypatch.setattr(classifier, "features", found["classifier"])
    monkeypatch.setattr(torch, "stft", found["stft"])
    return found


def test_with_every_auxiliary_weight_at_zero_only_the_kl_is_computed(frozen, tmp_path, spies):
    zero = {"kl": 1.0, **dict.fromkeys(AUXILIARY, 0.0)}
    run, job = make_run(frozen, tmp_path, loss_weights=zero)
    for step, batch in enumerate(train_batches(run, 3)):
        record = train_step(run, job, batch, step)
        assert all(record[name] is None for name in AUXILIARY), record
        assert record["total"] == pytest.approx(record["kl"])
        assert record["kl"] == pytest.approx(record["cross_entropy"] - record["entropy"])
    assert spies["teacher"].calls == 3, "the teacher runs once per step"
    assert spies["classifier"].calls == 0 and spies["stft"].calls == 0


def test_the_spies_see_every_term_when_all_are_on(frozen, tmp_path, spies):
    run, job = make_run(frozen, tmp_path)
    record = train_step(run, job, next(train_batches(run, 1)), 0)
    assert all(record[name] is not None for name in LOGGED_TERMS)
    assert spies["teacher"].calls == 2, "matched, then mismatched conditioning (contrastive)"
    assert spies["classifier"].calls == 2, "generated and real audio"
    # power: 2 STFTs; MR-STFT: 2 per resolution; log-mel: 2 (torchaudio's, through torch.stft).
    assert spies["stft"].calls == 2 + 2 * len(run.config.stft_resolutions) + 2


def test_kl_gradients_reach_the_student_through_the_teachers_input_only(
    frozen, tmp_path, monkeypatch
):
    zero = {"kl": 1.0, **dict.fromkeys(AUXILIARY, 0.0)}
    run, job = make_run(frozen, tmp_path, loss_weights=zero)
    _, teacher, classifier = frozen
    frozen_weights = {
        name: tensor.clone()
        for model in (teacher, classifier)
        for name, tensor in model.state_dict().items()
    }
    seen, forward = [], teacher.forward_companded

    def keep_input(companded, *args):
        companded.retain_grad()  # the student's sample x, as the teacher receives it
        seen.append(companded)
        return forward(companded, *args)

    monkeypatch.setattr(teacher, "forward_companded", keep_input)
    train_step(run, job, next(train_batches(run, 1)), 0)
    (x,) = seen
    assert x.requires_grad and x.grad is not None and x.grad.abs().sum() > 0
    for name, parameter in run.model.named_parameters():
        assert parameter.grad is not None, name
    assert any(p.grad.abs().sum() > 0 for p in run.model.flows[0].parameters())
    for model in (teacher, classifier):
        assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    after = {n: t for model in (teacher, classifier) for n, t in model.state_dict().items()}
    assert all(torch.equal(after[name], tensor) for name, tensor in frozen_weights.items())


def test_the_kl_warm_up_trains_spectral_terms_first_without_running_the_teacher(
    frozen, tmp_path, spies
):
    warmup = {"spectral_steps": 2, "ramp_steps": 2}
    run, job = make_run(frozen, tmp_path, kl_warmup=warmup)
    assert [active_weights(run.config, step).get("kl") for step in range(5)] == [
        None,
        None,
        0.5,
        1.0,
        1.0,
    ]
    assert active_weights(run.config, 2)["contrastive"] == pytest.approx(0.5)
    for step, batch in enumerate(train_batches(run, 2)):
        record = train_step(run, job, batch, step)
        assert record["kl"] is None and record["contrastive"] is None and record["stft"]
    assert spies["teacher"].calls == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss_weights": dict.fromkeys(("kl", *AUXILIARY), 0.0)}, "every weight is 0"),
        ({"batch_size": 1}, "contrastive loss needs batch_size >= 2"),
        ({"loss_weights": {"kl": 1.0}, "kl_warmup": {"spectral_steps": 5}}, "spectral_steps"),
        ({"loss_weights": {"kl": 1.0, "klx": 1.0}}, "loss_weights.klx"),
        ({"loss_weights": {"kl": 0.25, "contrastive": 1.0}}, r"\(0.3\) must be below.*unbounded"),
    ],
)
def test_bad_distillation_configs_fail_saying_why(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_distill_config(config_file(tmp_path, **overrides), ["a"])


def test_the_teacher_gate_warns_on_its_runs_last_held_out_nll(tmp_path):
    teacher = tmp_path / "teacher-run" / "model"
    teacher.mkdir(parents=True)
    assert teacher_nll_warning(teacher, 6.0) is None, "no metrics: nothing to check"
    lines = [{"step": 1000, "val_nll": 4.0}, {"step": 1050, "nll": 5.0}, {"step": 2000}]
    metrics = teacher.parent / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert teacher_nll_warning(teacher, 6.0) is None
    metrics.write_text(metrics.read_text() + json.dumps({"step": 3000, "val_nll": 7.25}) + "\n")
    message = teacher_nll_warning(teacher, 6.0)
    assert "7.250 bits/sample" in message and "teacher_nll_gate 6.0" in message
    assert teacher_nll_warning(teacher, None) is None, "a null gate switches the check off"


def test_held_out_scores_compare_the_students_own_sample_with_the_real_clip(frozen, tmp_path):
    run, _ = make_run(frozen, tmp_path)
    corpus, teacher, _ = frozen
    student = run.ema.eval()
    items = validation_items(corpus, count=2, frames=16)
    scores = held_out_kl(student, teacher, items, CPU, seed=3)
    assert scores["log_mel_l1"] > 0 and 0 <= scores["periodicity"] <= 1
    assert scores["kl"] == pytest.approx(held_out_kl(student, teacher, items, CPU, 3)["kl"])
    # Scored against the very sample the student makes from the same noise, the distance is 0.
    own = []
    for index, item in enumerate(items):
        z = noise_for(tuple(item["audio"].shape), 3, 0, index, CPU)
        x, _, _ = student(z, item["mel"], item["speaker"])
        own.append({**item, "audio": mulaw.expand(x).clamp(-1, 1).detach()})
    assert held_out_kl(student, teacher, own, CPU, seed=3)["log_mel_l1"] < 1e-4
    without_audio = [{k: v for k, v in item.items() if k != "audio"} for item in items]
    assert set(held_out_kl(student, teacher, without_audio, CPU, 3)) == {
        "kl",
        "cross_entropy",
        "entropy",
    }


def test_held_out_scores_without_a_teacher_are_the_spectral_ones_alone(frozen, tmp_path):
    run, _ = make_run(frozen, tmp_path)
    corpus, teacher, _ = frozen
    items = validation_items(corpus, count=2, frames=16)
    with_teacher = held_out_kl(run.ema.eval(), teacher, items, CPU, seed=3)
    alone = held_out_kl(run.ema, None, items, CPU, seed=3)
    assert set(alone) == {"log_mel_l1", "periodicity"}
    assert alone == {name: with_teacher[name] for name in alone}
