"""The demo page in headless Chromium: upload a clip, get a playable resynthesis; with a
pitch-aware model, shift its pitch and see the F0 contour over both spectrograms."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import write_tone
from service_fixtures import (
    running_server,
    save_pitch_checkpoints,
    save_served_checkpoint,
    service_settings,
    voice,
)

from service.app import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # A synthetic microphone (a beep), granted without a prompt, for the record button.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory):
    checkpoint = save_served_checkpoint(tmp_path_factory.mktemp("served") / "tiny")
    # Room for a short recording: 0.8 s at 8 kHz.
    settings = service_settings(checkpoint, max_frames=400)
    with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def pitch_url(tmp_path_factory: pytest.TempPathFactory):
    student, _ = save_pitch_checkpoints(tmp_path_factory.mktemp("pitch"))
    settings = service_settings(student, max_frames=400, stream_chunk_frames=8)
    with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def page(base_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        yield page
        browser.close()


def audio_state(page, selector: str) -> dict:
    return page.eval_on_selector(
        selector,
        "audio => ({src: audio.currentSrc, ready: audio.readyState, duration: audio.duration})",
    )


def painted_pixels(page, selector: str) -> int:
    """Pixels of a canvas that are not plain black (a drawn spectrogram has many)."""
    return page.eval_on_selector(
        selector,
        """canvas => {
            const context = canvas.getContext("2d");
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i] + data[i + 1] + data[i + 2] > 0) count++;
            }
            return count;
        }""",
    )


def contour_rows(page, selector: str) -> list[float]:
    """Mean row of the F0 contour's pixels (cyan: much blue, little red; the spectrogram's
    colours have blue below 100 and its labels are white) in each column that has one."""
    return page.eval_on_selector(
        selector,
        """canvas => {
            const context = canvas.getContext("2d");
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            const rows = [];
            for (let x = 0; x < canvas.width; x++) {
                let sum = 0, count = 0;
                for (let y = 0; y < canvas.height; y++) {
                    const i = 4 * (y * canvas.width + x);
                    if (data[i + 2] > 150 && data[i] < 100) { sum += y; count++; }
                }
                if (count) rows.push(sum / count);
            }
            return rows;
        }""",
    )


def test_upload_resynthesize_and_play(page, base_url, tmp_path: Path):
    clip = write_tone(tmp_path / "tone.wav", seconds=0.02)
    page.goto(base_url + "/")
    page.wait_for_function("document.querySelectorAll('#speaker option').length === 2")
    assert page.locator("#speaker option").all_inner_texts() == ["0: alice", "1: bob"]
    assert "teacher" in page.inner_text("#model-info")
    assert page.is_hidden("#pitch-field"), "a mel-only model offers no pitch shift"

    page.set_input_files("#clip", str(clip))
    page.wait_for_function("document.querySelector('#original').readyState >= 1")
    page.select_option("#speaker", "1")
    page.click("#go")
    page.wait_for_function(
        "document.body.dataset.result === 'shown'"
        " && document.querySelector('#result').readyState >= 1"
        " && document.querySelector('#result').duration > 0",
        timeout=30_000,
    )
    result = audio_state(page, "#result")
    assert result["src"].startswith("blob:")
    # 0.02 s at 8 kHz is 160 samples, 10 frames of 16: the resynthesis is exactly as long.
    assert result["duration"] == pytest.approx(0.02, abs=1e-3)
    assert "Made 0.02 s of audio" in page.inner_text("#status")
    assert painted_pixels(page, "#original-spectrogram") > 1000
    assert painted_pixels(page, "#result-spectrogram") > 1000
    assert contour_rows(page, "#result-spectrogram") == [] and page.is_hidden("#f0-legend")
    assert page.errors == []


def test_pitch_shift_and_the_f0_contour_over_both_spectrograms(page, pitch_url, tmp_path: Path):
    clip = tmp_path / "voice.wav"
    soundfile.write(clip, voice(150.0, 0.5), 8000, subtype="PCM_16")
    page.goto(pitch_url + "/")
    page.wait_for_function("!document.querySelector('#pitch-field').hidden")
    assert "pitch-aware (F0 up to 1000 Hz)" in page.inner_text("#model-info")
    page.set_input_files("#clip", str(clip))
    page.wait_for_function("document.querySelector('#original').readyState >= 1")
    page.eval_on_selector(
        "#pitch-shift", "el => { el.value = '12'; el.dispatchEvent(new Event('input')); }"
    )
    assert page.inner_text("#pitch-shift-value") == "12"
    page.click("#go")
    page.wait_for_function("document.body.dataset.f0 === 'drawn'", timeout=30_000)
    assert "F0 from the tracker, shifted 12 semitones" in page.inner_text("#status")
    assert page.is_visible("#f0-legend")
    # One scale for both, 0 to 600 Hz (the tracker's range) over 160 rows: 150 Hz at row 120
    # over the original, an octave up (300 Hz) at row 80 over the resynthesis.
    original = contour_rows(page, "#original-spectrogram")
    shifted = contour_rows(page, "#result-spectrogram")
    assert len(original) > 400 and len(shifted) > 400  # across most of the 512 columns
    assert np.median(original) == pytest.approx(120, abs=2)
    assert np.median(shifted) == pytest.approx(80, abs=2)
    page.screenshot(path=str(tmp_path / "demo-pitch.png"), full_page=True)
    assert page.errors == []


def test_a_bad_upload_shows_the_services_error(page, base_url, tmp_path: Path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are not audio samples" * 10)
    page.goto(base_url + "/")
    page.wait_for_function("document.querySelectorAll('#speaker option').length === 2")
    page.set_input_files("#clip", str(fake))
    page.click("#go")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Error')")
    status = page.inner_text("#status")
    assert "415" in status and "not a readable" in status
    assert page.errors == []


def test_record_resynthesize_and_play(page, base_url):
    page.goto(base_url + "/")
    page.wait_for_function("document.querySelectorAll('#speaker option').length === 2")
    page.click("#record")
    page.wait_for_function("document.querySelector('#record').textContent === 'Stop'")
    page.wait_for_timeout(200)
    page.click("#record")
    page.wait_for_function("document.querySelector('#status').textContent.includes('recording')")
    assert audio_state(page, "#original")["src"].startswith("blob:")
    page.click("#go")
    page.wait_for_function(
        "document.body.dataset.result === 'shown'"
        " && document.querySelector('#result').duration > 0",
        timeout=30_000,
    )
    assert float(page.inner_text("#status").split()[1]) > 0
    assert page.errors == []
