// Demo page: pick or record a clip, send it to /v1/resynthesize, play and compare both.
// With a pitch-aware model: a pitch-shift control, and the F0 the model was given (from
// /v1/resynthesize/f0) drawn over both spectrograms.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  clip: null, clipName: "clip.wav", sampleRate: 16000, recorder: null, pitch: null, original: null,
};
const F0_COLOUR = "rgb(0, 229, 255)";

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.detail || response.statusText;
  } catch {
    return response.statusText;
  }
}

async function loadModel() {
  const response = await fetch("/v1/models", { headers: authHeaders() });
  if (!response.ok) {
    $("model-info").textContent = `Model description unavailable: ${await errorText(response)}`;
    return;
  }
  const model = (await response.json()).models[0];
  state.sampleRate = model.sample_rate;
  $("model-info").textContent =
    `${model.name}: ${model.kind}, ${model.sample_rate} Hz, ${model.spec.n_mels} mel bands`;
  const select = $("speaker");
  select.replaceChildren();
  model.speakers.forEach((name, id) => select.add(new Option(`${id}: ${name}`, String(id))));
  $("speaker-field").hidden = model.speakers.length === 0;
  state.pitch = model.pitch;
  $("pitch-field").hidden = !model.pitch_aware;
  if (model.pitch) {
    const [low, high] = model.pitch.pitch_shift_range;
    Object.assign($("pitch-shift"), { min: String(low), max: String(high) });
    $("model-info").textContent += `, pitch-aware (F0 up to ${model.pitch.f0_max} Hz)`;
  }
}

// Decoded mono samples of an audio blob, resampled to the model's rate by the browser.
async function decode(blob) {
  const context = new OfflineAudioContext(1, 1, state.sampleRate);
  const buffer = await context.decodeAudioData(await blob.arrayBuffer());
  return buffer.getChannelData(0);
}

// In-place iterative radix-2 FFT of (re, im), length a power of two.
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const angle = (-2 * Math.PI) / len;
    for (let start = 0; start < n; start += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(angle * k), wi = Math.sin(angle * k);
        const a = start + k, b = a + len / 2;
        const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr; im[b] = im[a] - ti;
        re[a] += tr; im[a] += ti;
      }
    }
  }
}

// Log-magnitude STFT columns (Hann window), each size / 2 bins.
function spectrogram(samples, size = 256, hop = 64) {
  const window = Float32Array.from({ length: size }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / size));
  const columns = [];
  for (let start = 0; start === 0 || start + size <= samples.length; start += hop) {
    const re = new Float32Array(size), im = new Float32Array(size);
    for (let i = 0; i < size && start + i < samples.length; i++) re[i] = samples[start + i] * window[i];
    fft(re, im);
    columns.push(Float32Array.from({ length: size / 2 }, (_, k) => Math.log10(1e-6 + Math.hypot(re[k], im[k]))));
  }
  return columns;
}

function draw(canvas, columns) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(canvas.width, canvas.height);
  const bins = columns[0].length;
  const top = Math.max(...columns.map((column) => Math.max(...column)));
  for (let x = 0; x < canvas.width; x++) {
    const column = columns[Math.floor((x * columns.length) / canvas.width)];
    for (let y = 0; y < canvas.height; y++) {
      const bin = Math.floor(((canvas.height - 1 - y) * bins) / canvas.height);
      const level = Math.max(0, Math.min(1, 1 + (column[bin] - top) / 6)); // 120 dB range
      const offset = 4 * (y * canvas.width + x);
      image.data[offset] = 255 * Math.min(1, 2 * level);
      image.data[offset + 1] = 255 * Math.max(0, 2 * level - 1);
      image.data[offset + 2] = 96 * level;
      image.data[offset + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
}

// Plays and draws a clip; returns its spectrogram columns and duration in seconds.
async function show(blob, audio, canvas) {
  audio.src = URL.createObjectURL(blob);
  const samples = await decode(blob);
  const view = { columns: spectrogram(samples), seconds: samples.length / state.sampleRate };
  draw(canvas, view.columns);
  return view;
}

// The F0 contour (Hz per frame, 0 = unvoiced) over a spectrogram of `seconds`, on its own
// scale from 0 (bottom) to `top` Hz, labelled on the right; unvoiced frames break the line.
function drawF0(canvas, f0, frameSeconds, seconds, top) {
  const context = canvas.getContext("2d");
  const x = (frame) => (((frame + 0.5) * frameSeconds) / seconds) * canvas.width;
  const y = (hz) => canvas.height * (1 - hz / top);
  context.beginPath();
  f0.forEach((hz, frame) => {
    if (hz <= 0) return;
    if (frame === 0 || f0[frame - 1] <= 0) context.moveTo(x(frame), y(hz));
    else context.lineTo(x(frame), y(hz));
  });
  // A dark edge keeps the line visible on the bright parts of the spectrogram.
  for (const [colour, width] of [["black", 4], [F0_COLOUR, 2]]) {
    context.strokeStyle = colour;
    context.lineWidth = width;
    context.stroke();
  }
  context.fillStyle = "white";
  context.font = "10px sans-serif";
  context.textAlign = "right";
  for (const hz of [top / 2, top]) context.fillText(`${Math.round(hz)} Hz`, canvas.width - 2, y(hz) + 10);
}

// The F0 /v1/resynthesize used for this clip and shift, over both spectrograms.
async function showF0(shift, originalSeconds, resultSeconds) {
  const form = new FormData();
  form.append("file", state.clip, state.clipName);
  form.append("pitch_shift", shift);
  const response = await fetch("/v1/resynthesize/f0", { method: "POST", body: form, headers: authHeaders() });
  if (!response.ok) throw new Error(`F0 unavailable (${response.status}: ${await errorText(response)})`);
  const track = await response.json();
  // One scale for both: the tracker's range, or more when the shift goes above it.
  const top = Math.max(state.pitch.tracker.f0_max, ...track.f0);
  drawF0($("original-spectrogram"), track.unshifted, track.frame_seconds, originalSeconds, top);
  drawF0($("result-spectrogram"), track.f0, track.frame_seconds, resultSeconds, top);
  $("f0-legend").hidden = false;
  document.body.dataset.f0 = "drawn";
}

// 16-bit mono WAV of float samples in [-1, 1], so any recording can be uploaded.
function wavBlob(samples, sampleRate) {
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, 1, true); view.setUint32(24, sampleRate, true);
  view.setUint32(28, 2 * sampleRate, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  samples.forEach((s, i) => view.setInt16(44 + 2 * i, Math.round(32767 * Math.max(-1, Math.min(1, s))), true));
  return new Blob([view], { type: "audio/wav" });
}

async function useClip(blob, name) {
  state.clip = blob;
  state.clipName = name;
  $("go").disabled = false;
  try {
    state.original = null;
    state.original = await show(blob, $("original"), $("original-spectrogram"));
    setStatus(`Loaded ${name}.`);
  } catch (error) {
    setStatus(`Loaded ${name}; the browser cannot decode it for display (${error.message}).`);
  }
}

async function toggleRecording() {
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const recorder = new MediaRecorder(stream);
  const parts = [];
  recorder.ondataavailable = (event) => parts.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    state.recorder = null;
    $("record").textContent = "Record";
    const samples = await decode(new Blob(parts, { type: recorder.mimeType }));
    await useClip(wavBlob(samples, state.sampleRate), "recording.wav");
  };
  state.recorder = recorder;
  recorder.start();
  $("record").textContent = "Stop";
  setStatus("Recording…");
}

async function resynthesize() {
  const form = new FormData();
  form.append("file", state.clip, state.clipName);
  form.append("format", "wav");
  form.append("temperature", $("temperature").value || "1");
  if (!$("speaker-field").hidden) form.append("speaker", $("speaker").value);
  const shift = state.pitch ? $("pitch-shift").value : "0";
  if (state.pitch) form.append("pitch_shift", shift);
  $("go").disabled = true;
  setStatus("Resynthesizing…");
  try {
    const response = await fetch("/v1/resynthesize", { method: "POST", body: form, headers: authHeaders() });
    if (!response.ok) {
      setStatus(`Error ${response.status}: ${await errorText(response)}`, true);
      return;
    }
    const seconds = Number(response.headers.get("X-Audio-Seconds")).toFixed(2);
    const millis = response.headers.get("X-Inference-Ms");
    const result = await show(await response.blob(), $("result"), $("result-spectrogram"));
    const pitchNote = state.pitch ? `, F0 from the ${response.headers.get("X-F0-Source")}, shifted ${shift} semitones` : "";
    setStatus(`Made ${seconds} s of audio in ${millis} ms${pitchNote}.`);
    document.body.dataset.result = "shown";
    if (state.pitch && state.original) {
      // The original's spectrogram is drawn afresh, so that contours do not pile up on it.
      draw($("original-spectrogram"), state.original.columns);
      await showF0(shift, state.original.seconds, result.seconds);
    }
  } catch (error) {
    setStatus(`Failed: ${error.message}`, true);
  } finally {
    $("go").disabled = false;
  }
}

$("clip").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) useClip(file, file.name);
});
$("record").addEventListener("click", () => toggleRecording().catch((error) => setStatus(`Cannot record: ${error.message}`, true)));
$("go").addEventListener("click", resynthesize);
$("pitch-shift").addEventListener("input", () => { $("pitch-shift-value").value = $("pitch-shift").value; });
$("api-key").addEventListener("change", loadModel);
loadModel().catch((error) => setStatus(`Cannot reach the service: ${error.message}`, true));
