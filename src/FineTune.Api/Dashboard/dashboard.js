'use strict';
// The dashboard: plain JavaScript over the HTTP API, no build step. `finetune serve` authorises it by the cookie
// its token URL set. The Functions app's page is opened as /#key=FUNCTION_KEY: the fragment never reaches a
// server; the key moves to this tab's sessionStorage and goes out only as the x-functions-key header, never in a URL.
const fragmentKey = new URLSearchParams(location.hash.slice(1)).get('key');
if (fragmentKey) {
  sessionStorage.setItem('functions-key', fragmentKey);
  history.replaceState(null, '', location.pathname + location.search);
}
const key = sessionStorage.getItem('functions-key');
// The API's links are absolute, at the address the server names; the page follows them on its own origin.
const local = url => { const u = new URL(url, location.href); return u.pathname + u.search; };
const api = async (path, init = {}) => {
  const response = await fetch('api/finetune' + path, key ? { ...init, headers: { ...init.headers, 'x-functions-key': key } } : init);
  if (response.status === 401) $('auth-message').hidden = false;
  return response;
};
const $ = id => document.getElementById(id);
const percent = x => x == null ? '' : (100 * x).toFixed(1) + '%';

let selected = null;
let shownDone = false;

async function refreshRuns() {
  const response = await api('?top=50');
  if (!response.ok) return;
  const page = await response.json();
  const body = $('runs');
  body.replaceChildren(...page.runs.map(run => {
    const row = document.createElement('tr');
    row.dataset.id = run.id;
    if (run.id === selected) row.classList.add('selected');
    for (const text of [run.id, run.status, run.progress?.stage ?? '', percent(run.progress?.validationAccuracy)]) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.append(cell);
    }
    row.addEventListener('click', () => select(run.id));
    return row;
  }));
}

function select(id) {
  selected = id;
  shownDone = false;
  $('run-view').hidden = false;
  $('run-id').textContent = id;
  $('evaluation').hidden = true;
  $('predictions').replaceChildren();
  $('downloads').replaceChildren();
  for (const chart of ['loss-chart', 'accuracy-chart']) $(chart).replaceChildren();
  refreshRun();
  refreshRuns();
}

async function refreshRun() {
  const id = selected;
  if (!id) return;
  const response = await api('/' + encodeURIComponent(id));
  if (id !== selected || !(response.ok || response.status === 202)) return;
  const run = await response.json();
  const p = run.progress;
  $('run-status').textContent = run.status;
  $('stage').textContent = p?.stage === 'queued' ? `queued (position ${p.queuePosition})` : p?.stage ?? 'pending';
  const epochs = p?.epochs ?? 0, done = p?.epoch ?? 0;
  $('epoch').dataset.done = String(done);
  // A sweep reports trials, and its curves and evaluation are its best trial's.
  const sweep = p?.sweep;
  $('epoch').textContent = sweep
    ? `trials ${sweep.finished}/${sweep.trials} done, ${sweep.running} running` + (sweep.bestTrial ? `, best ${sweep.bestTrial} (val accuracy ${percent(sweep.bestValidationAccuracy)})` : '')
    : `epoch ${done}/${epochs} done` + (p?.stage === 'training' && p.stepsPerEpoch ? `, step ${p.step}/${p.stepsPerEpoch}` : '');
  const shown = run.result?.sweep?.bestTrial ?? sweep?.bestTrial ?? id;
  $('eta').textContent = p?.etaSeconds != null && !run.done ? ` · ETA ${Math.round(p.etaSeconds)} s` : '';
  const kind = run.errorKind ?? p?.errorKind;
  $('error').hidden = !run.error;
  $('error').textContent = run.error ? (kind ? `${kind}: ` : '') + run.error : '';
  await drawMetrics(id, shown);
  if (run.done && !shownDone) {
    shownDone = true;
    showDownloads(run);
    await showEvaluation(shown);
    refreshRuns();
  }
}

// The curves of run `id` (of its best trial for a sweep: `shown`), unless another run was selected meanwhile.
async function drawMetrics(id, shown = id) {
  const response = await api(`/${encodeURIComponent(shown)}/artifacts/metrics.jsonl`);
  if (!response.ok || id !== selected) return;
  const lines = (await response.text()).split('\n').filter(l => l.trim()).map(l => JSON.parse(l));
  chart($('loss-chart'), lines, [['train', 'trainLoss'], ['validation', 'validationLoss']], null);
  chart($('accuracy-chart'), lines, [['train', 'trainAccuracy'], ['validation', 'validationAccuracy']], [0, 1]);
}

// A line chart of per-epoch values; one polyline per series, with its points in data-points.
function chart(svg, lines, series, fixedRange) {
  const ns = 'http://www.w3.org/2000/svg';
  const [w, h, left, bottom, top] = [320, 180, 34, 20, 8];
  const values = lines.flatMap(l => series.map(([, field]) => l[field]));
  let [min, max] = fixedRange ?? [Math.min(0, ...values), Math.max(...values, 1e-9)];
  if (max === min) max = min + 1;
  const epochs = Math.max(lines.length, 2);
  const x = i => left + (w - left - 8) * i / (epochs - 1);
  const y = v => h - bottom - (h - bottom - top) * (v - min) / (max - min);
  svg.replaceChildren();
  const add = (name, attributes, text) => {
    const e = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    svg.append(e);
    return e;
  };
  add('line', { x1: left, y1: h - bottom, x2: w, y2: h - bottom, stroke: '#999' });
  add('line', { x1: left, y1: top, x2: left, y2: h - bottom, stroke: '#999' });
  add('text', { x: 2, y: top + 8 }, max.toFixed(2));
  add('text', { x: 2, y: h - bottom }, min.toFixed(2));
  add('text', { x: w - 60, y: h - 4 }, `epoch ${lines.length}`);
  series.forEach(([name, field], s) => {
    const points = lines.map((l, i) => `${x(i).toFixed(1)},${y(l[field]).toFixed(1)}`).join(' ');
    add('polyline', { class: name, points, 'data-points': String(lines.length) });
    add('text', { x: left + 6 + 70 * s, y: top + 10, fill: s ? '#ff7f0e' : '#1f77b4' }, name);
  });
}

function showDownloads(run) {
  const list = $('downloads');
  list.replaceChildren();
  if (!run.artifacts) return;
  for (const [label, url] of Object.entries(run.artifacts)) {
    const item = document.createElement('li');
    const link = document.createElement('a');
    const path = local(url);
    link.href = path;
    link.textContent = url.split('/').pop();
    link.dataset.artifact = label;
    // A link cannot carry the key header: with a key, the file is fetched with it and saved from memory.
    if (key) link.addEventListener('click', async event => {
      event.preventDefault();
      const response = await api(path.slice('/api/finetune'.length));
      if (!response.ok) return;
      const disposition = response.headers.get('content-disposition') ?? '';
      const save = document.createElement('a');
      save.href = URL.createObjectURL(await response.blob());
      save.download = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? link.textContent;
      save.click();
      setTimeout(() => URL.revokeObjectURL(save.href), 60_000);
    });
    item.append(link);
    list.append(item);
  }
}

async function showEvaluation(id) {
  const response = await api(`/${encodeURIComponent(id)}/artifacts/evaluation.json`);
  if (!response.ok) return;
  const report = await response.json();
  $('evaluation').hidden = false;
  $('evaluation-summary').textContent = `${report.split}: ${report.count} images, top-1 ${percent(report.top1Accuracy)}`
    + (report.top5Accuracy != null ? `, top-5 ${percent(report.top5Accuracy)}` : '') + `, loss ${report.loss.toFixed(4)}`;
  const cell = (tag, text, cls) => { const c = document.createElement(tag); c.textContent = text; if (cls) c.className = cls; return c; };
  const confusion = $('confusion');
  confusion.replaceChildren();
  const head = document.createElement('tr');
  head.append(cell('th', 'true \\ predicted'), ...report.classes.map(c => cell('th', c)));
  confusion.append(head);
  report.confusionMatrix.forEach((row, i) => {
    const tr = document.createElement('tr');
    tr.append(cell('th', report.classes[i]), ...row.map((n, j) => cell('td', String(n), i === j ? 'hit' : '')));
    confusion.append(tr);
  });
  const perClass = $('per-class');
  perClass.replaceChildren();
  const header = document.createElement('tr');
  header.append(...['class', 'precision', 'recall', 'F1', 'images'].map(t => cell('th', t)));
  perClass.append(header);
  for (const m of report.perClass) {
    const tr = document.createElement('tr');
    tr.append(cell('td', m.class), cell('td', percent(m.precision)), cell('td', percent(m.recall)), cell('td', percent(m.f1)), cell('td', String(m.support)));
    perClass.append(tr);
  }
}

function merge(target, source) {
  for (const [k, v] of Object.entries(source)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) merge(target[k] ??= {}, v);
    else target[k] = v;
  }
  return target;
}

$('start-form').addEventListener('submit', async event => {
  event.preventDefault();
  const message = $('start-message');
  let extra = {};
  try {
    extra = $('spec-extra').value.trim() ? JSON.parse($('spec-extra').value) : {};
  } catch (e) {
    message.textContent = 'More of the job spec: ' + e.message;
    return;
  }
  const spec = merge({ model: $('model').value, dataset: { resize: $('resize').value }, training: { epochs: Number($('epochs').value) } }, extra);
  const form = new FormData();
  form.append('dataset', $('dataset').files[0]);
  form.append('spec', JSON.stringify(spec));
  message.textContent = 'uploading…';
  const response = await api('', { method: 'POST', body: form });
  const body = await response.json();
  if (response.status === 202) {
    message.textContent = `started ${body.id}`;
    select(body.id);
  } else {
    message.textContent = body.detail;
  }
});

$('predict-form').addEventListener('submit', async event => {
  event.preventDefault();
  const form = new FormData();
  for (const file of $('predict-image').files) form.append('image', file);
  $('predict-message').textContent = 'classifying…';
  const response = await api(`/${encodeURIComponent(selected)}/predict?top=${encodeURIComponent($('top').value)}`, { method: 'POST', body: form });
  const body = await response.json();
  if (!response.ok) {
    $('predict-message').textContent = body.detail;
    return;
  }
  $('predict-message').textContent = '';
  $('predictions').replaceChildren(...body.predictions.map(image => {
    const block = document.createElement('div');
    block.className = 'prediction';
    const title = document.createElement('strong');
    title.textContent = image.image;
    const list = document.createElement('ol');
    for (const p of image.predictions) {
      const item = document.createElement('li');
      item.className = 'class-probability';
      item.textContent = `${p.class} ${percent(p.probability)}`;
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = `${Math.round(120 * p.probability)}px`;
      item.append(bar);
      list.append(item);
    }
    block.append(title, list);
    return block;
  }));
});

refreshRuns();
setInterval(refreshRun, 1000);
setInterval(refreshRuns, 5000);
