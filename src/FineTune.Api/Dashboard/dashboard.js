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
const request = async (path, init = {}) => {
  const response = await fetch(path, key ? { ...init, headers: { ...init.headers, 'x-functions-key': key } } : init);
  if (response.status === 401) $('auth-message').hidden = false;
  return response;
};
const api = (path, init) => request('api/finetune' + path, init);
const $ = id => document.getElementById(id);
const percent = x => x == null ? '' : (100 * x).toFixed(1) + '%';
const cell = (tag, content, cls) => {
  const c = document.createElement(tag);
  if (content instanceof Node) c.append(content); else c.textContent = content ?? '';
  if (cls) c.className = cls;
  return c;
};

let selected = null;
let shownDone = false;
// Paging: the token each page starts at (the first: none), and the next page's, as the API last gave it.
const pageTokens = [null];
let pageIndex = 0;
let nextToken = null;
// The runs (or trials) whose curves are compared: two at most, the older dropped for a third.
const compared = [];

async function refreshRuns() {
  const token = pageTokens[pageIndex];
  const size = Math.min(200, Math.max(1, Number($('page-size').value) || 20));
  const response = await api(`?top=${size}` + (token ? `&continuationToken=${encodeURIComponent(token)}` : ''));
  if (!response.ok || token !== pageTokens[pageIndex]) return;
  const page = await response.json();
  nextToken = page.continuationToken ?? null;
  $('previous-page').disabled = pageIndex === 0;
  $('next-page').disabled = !nextToken;
  $('page-number').textContent = `page ${pageIndex + 1}`;
  $('runs-empty').hidden = page.runs.length > 0;
  $('runs').replaceChildren(...page.runs.map(run => {
    const row = document.createElement('tr');
    row.dataset.id = run.id;
    if (run.id === selected) row.classList.add('selected');
    row.append(cell('td', compareBox(run.id)));
    for (const text of [run.id, run.status, run.progress?.stage ?? '', percent(run.progress?.validationAccuracy)]) row.append(cell('td', text));
    row.addEventListener('click', () => select(run.id));
    return row;
  }));
}

function turnPage(step) {
  if (step > 0) pageTokens[pageIndex + 1] = nextToken;
  pageIndex += step;
  refreshRuns();
}
$('previous-page').addEventListener('click', () => turnPage(-1));
$('next-page').addEventListener('click', () => turnPage(1));
// Another page size starts over at the first page: tokens are per size.
$('page-size').addEventListener('change', () => {
  pageTokens.length = 1;
  pageIndex = 0;
  refreshRuns();
});

function compareBox(id) {
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.className = 'compare';
  box.value = id;
  box.checked = compared.includes(id);
  box.title = `compare ${id}`;
  box.addEventListener('click', event => event.stopPropagation());
  box.addEventListener('change', () => {
    const at = compared.indexOf(id);
    if (box.checked && at < 0) compared.push(id);
    if (!box.checked && at >= 0) compared.splice(at, 1);
    if (compared.length > 2) compared.shift();
    for (const other of document.querySelectorAll('input.compare')) other.checked = compared.includes(other.value);
    drawComparison();
  });
  return box;
}

// A run's curves are its own, a sweep's its best trial's.
async function metricsOf(id) {
  const status = await api('/' + encodeURIComponent(id));
  const run = status.ok || status.status === 202 ? await status.json() : null;
  const shown = run?.result?.sweep?.bestTrial ?? run?.progress?.sweep?.bestTrial ?? id;
  const response = await api(`/${encodeURIComponent(shown)}/artifacts/metrics.jsonl`);
  return response.ok ? (await response.text()).split('\n').filter(l => l.trim()).map(l => JSON.parse(l)) : [];
}

async function drawComparison() {
  const ids = [...compared];
  $('compare').hidden = ids.length !== 2;
  if (ids.length !== 2) return;
  const [a, b] = await Promise.all(ids.map(metricsOf));
  if (ids.join() !== compared.join()) return;
  $('compare-runs').textContent = `${ids[0]} and ${ids[1]}`;
  const series = field => [['run-a', ids[0], a.map(l => l[field])], ['run-b', ids[1], b.map(l => l[field])]];
  chart($('compare-loss-chart'), series('validationLoss'), null);
  chart($('compare-accuracy-chart'), series('validationAccuracy'), [0, 1]);
}

function select(id) {
  selected = id;
  shownDone = false;
  $('run-view').hidden = false;
  $('run-id').textContent = id;
  $('action-message').textContent = '';
  for (const part of ['evaluation', 'sweep']) $(part).hidden = true;
  for (const part of ['predictions', 'downloads', 'misclassified', 'loss-chart', 'accuracy-chart']) $(part).replaceChildren();
  refreshRun();
  refreshRuns();
}

// What the API allows in each state: cancel while it runs, restart once failed or cancelled, purge once ended.
const restartable = ['Failed', 'Terminated', 'Stopped'];

async function refreshRun() {
  const id = selected;
  if (!id) return;
  const response = await api('/' + encodeURIComponent(id));
  if (id !== selected || !(response.ok || response.status === 202)) return;
  const run = await response.json();
  const p = run.progress;
  $('run-status').textContent = run.status;
  $('cancel').disabled = run.done;
  $('restart').disabled = !run.done || !restartable.includes(run.status);
  $('purge').disabled = !run.done;
  // A cancelled run's progress is where it stopped.
  $('stage').textContent = run.status === 'Terminated' ? `cancelled at ${p?.stage ?? 'start'}`
    : p?.stage === 'queued' ? (p.queuePosition == null ? 'queued' : `queued (position ${p.queuePosition})`)
    : p?.featurePass ? `${p.stage}: feature pass ${p.featurePass.shardsDone}/${p.featurePass.shards} shards` : p?.stage ?? 'pending';
  // An action's message stands until the state it changed changes.
  if (run.status !== actedOn) $('action-message').textContent = '';
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
  // A sweep's trials as the store records them, live while it runs; its result's table once it has one.
  if (run.trials && !run.result?.sweep && id === selected) showTrials({ trials: run.trials.map(t => ({ ...t, parameters: t.parameters ?? {}, epochsRun: t.epochsDone })) });
  if (run.done && !shownDone) {
    shownDone = true;
    showDownloads(run);
    if (run.result?.sweep) showTrials(run.result.sweep);
    await showEvaluation(id, shown);
    refreshRuns();
  }
}

let actedOn = null;

async function act(action, init, done) {
  const id = selected;
  actedOn = $('run-status').textContent;
  const response = await api(`/${encodeURIComponent(id)}${action}`, init);
  const body = await response.json();
  if (id !== selected) return;
  $('action-message').textContent = response.ok ? done : body.detail;
  if (response.ok) shownDone = false;
  await refreshRun();
  refreshRuns();
}
$('cancel').addEventListener('click', () => act('/cancel', { method: 'POST' }, 'cancelling: it stops at its next step'));
$('restart').addEventListener('click', () => act('/restart', { method: 'POST' }, 'restarted from its last checkpoint'));
$('purge').addEventListener('click', async () => {
  const id = selected;
  if (!confirm(`Purge run ${id}? Its history, checkpoints and reports are removed; its published model stays.`)) return;
  const response = await api('/' + encodeURIComponent(id), { method: 'DELETE' });
  const body = await response.json();
  if (!response.ok) {
    actedOn = $('run-status').textContent;
    $('action-message').textContent = body.detail;
    return;
  }
  selected = null;
  $('run-view').hidden = true;
  $('start-message').textContent = `purged ${id}`;
  refreshRuns();
});

// The curves of run `id` (of its best trial for a sweep: `shown`), unless another run was selected meanwhile.
async function drawMetrics(id, shown = id) {
  const response = await api(`/${encodeURIComponent(shown)}/artifacts/metrics.jsonl`);
  if (!response.ok || id !== selected) return;
  const lines = (await response.text()).split('\n').filter(l => l.trim()).map(l => JSON.parse(l));
  const series = fields => fields.map(([name, field]) => [name, name, lines.map(l => l[field])]);
  chart($('loss-chart'), series([['train', 'trainLoss'], ['validation', 'validationLoss']]), null);
  chart($('accuracy-chart'), series([['train', 'trainAccuracy'], ['validation', 'validationAccuracy']]), [0, 1]);
}

// A line chart of per-epoch values: series are [class, label, values]; one polyline each, with its points in data-points.
function chart(svg, series, fixedRange) {
  const ns = 'http://www.w3.org/2000/svg';
  const [w, h, left, bottom, top] = [320, 180, 34, 20, 8];
  const values = series.flatMap(([, , v]) => v).filter(v => v != null);
  let [min, max] = fixedRange ?? [Math.min(0, ...values), Math.max(...values, 1e-9)];
  if (max === min) max = min + 1;
  const longest = Math.max(...series.map(([, , v]) => v.length));
  const epochs = Math.max(longest, 2);
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
  add('text', { x: w - 60, y: h - 4 }, `epoch ${longest}`);
  series.forEach(([name, label, points], s) => {
    const drawn = points.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    add('polyline', { class: name, points: drawn, 'data-points': String(points.length) });
    // Dots too: one epoch is a point, not a line.
    points.forEach((v, i) => add('circle', { class: name, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }));
    add('text', { x: left + 6, y: top + 10 + 11 * s, class: `legend ${name}` }, label);
  });
}

// A table whose column headers sort it (again: the other way). columns: [key, label, format?]; state: { key, dir }.
function sortableTable(table, columns, rows, state) {
  // Blanks last whichever way.
  const order = (x, y) => x == null ? (y == null ? 0 : 1) : y == null ? -1
    : (typeof x === 'number' ? x - y : String(x).localeCompare(String(y))) * state.dir;
  const render = () => {
    const sorted = state.key == null ? rows : [...rows].sort((a, b) => order(a[state.key], b[state.key]));
    const head = document.createElement('tr');
    for (const [k, label] of columns) {
      const th = cell('th', label + (k === state.key ? (state.dir > 0 ? ' ▲' : ' ▼') : ''));
      th.dataset.key = k;
      if (k === state.key) th.setAttribute('aria-sort', state.dir > 0 ? 'ascending' : 'descending');
      th.addEventListener('click', () => {
        state.dir = state.key === k ? -state.dir : 1;
        state.key = k;
        render();
      });
      head.append(th);
    }
    table.replaceChildren(head, ...sorted.map(r => {
      const tr = document.createElement('tr');
      for (const [k, , format] of columns) tr.append(cell('td', format ? format(r[k], r) : String(r[k] ?? '')));
      return tr;
    }));
  };
  render();
}

const trialSort = { key: 'score', dir: -1 };

function showTrials(sweep) {
  const parameters = [...new Set(sweep.trials.flatMap(t => Object.keys(t.parameters)))];
  const rows = sweep.trials.map(t => ({
    compare: t.jobId, index: t.index, jobId: t.jobId, state: t.state, epochsRun: t.epochsRun, bestEpoch: t.bestEpoch, score: t.score,
    validationLoss: t.validationLoss, validationAccuracy: t.validationAccuracy,
    ...Object.fromEntries(parameters.map(p => ['p:' + p, t.parameters[p] ?? null])),
  }));
  const number = digits => v => v == null ? '' : v.toFixed(digits);
  sortableTable($('trials'), [
    ['compare', '', id => compareBox(id)], ['index', 'trial'], ['jobId', 'run'],
    ...parameters.map(p => ['p:' + p, p, v => v == null ? '' : JSON.stringify(v)]),
    ['state', 'state'], ['epochsRun', 'epochs'], ['bestEpoch', 'best epoch'], ['score', 'score', number(4)],
    ['validationLoss', 'val loss', number(4)], ['validationAccuracy', 'val accuracy', percent],
  ], rows, trialSort);
  $('sweep').hidden = false;
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

const perClassSort = { key: null, dir: 1 };

// The report of run `id` (of its best trial for a sweep: `shown`).
async function showEvaluation(id, shown) {
  const response = await api(`/${encodeURIComponent(shown)}/artifacts/evaluation.json`);
  if (!response.ok || id !== selected) return;
  const report = await response.json();
  $('evaluation').hidden = false;
  $('evaluation-summary').textContent = `${report.split}: ${report.count} images, top-1 ${percent(report.top1Accuracy)}`
    + (report.top5Accuracy != null ? `, top-5 ${percent(report.top5Accuracy)}` : '') + `, loss ${report.loss.toFixed(4)}`;
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
  sortableTable($('per-class'), [['class', 'class'], ['precision', 'precision', percent], ['recall', 'recall', percent], ['f1', 'F1', percent], ['support', 'images']],
    report.perClass, perClassSort);
  await showMisclassified(id, shown);
}

async function showMisclassified(id, shown) {
  const response = await api(`/${encodeURIComponent(shown)}/misclassified`);
  if (!response.ok || id !== selected) return;
  const list = await response.json();
  $('misclassified-summary').textContent = list.images.length ? `${list.images.length} of the ${list.split} set, most confident mistakes first` : 'none';
  $('misclassified').replaceChildren(...list.images.map(m => {
    const figure = document.createElement('figure');
    figure.className = 'mistake';
    const image = document.createElement('img');
    image.alt = m.path;
    image.title = m.path;
    // Fetched as the API is (with the key where there is one), then shown from memory.
    api(local(m.image).slice('/api/finetune'.length)).then(r => r.ok ? r.blob() : null).then(blob => {
      if (blob) image.src = URL.createObjectURL(blob);
    });
    const caption = document.createElement('figcaption');
    caption.append(cell('strong', `true: ${m.label}`));
    const top = document.createElement('ol');
    for (const p of m.top) top.append(cell('li', `${p.class} ${percent(p.probability)}`, 'class-probability'));
    caption.append(top);
    figure.append(image, caption);
    return figure;
  }));
}

function merge(target, source) {
  for (const [k, v] of Object.entries(source)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) merge(target[k] ??= {}, v);
    else target[k] = v;
  }
  return target;
}

// The model picker: families, their builders and each builder's weights, with the input each set of weights expects.
let families = [];
const builderOf = name => families.flatMap(f => f.builders).find(b => b.name === name);

function option(value, text) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  return o;
}

async function loadModels() {
  const response = await request('api/models');
  if (!response.ok) return;
  families = (await response.json()).families;
  const current = $('model').value;
  $('model-family').replaceChildren(...families.map(f => option(f.name, `${f.name} (${f.builders.length})`)));
  $('model-family').value = families.find(f => f.builders.some(b => b.name === current))?.name ?? families[0].name;
  showBuilders(current);
}

function showBuilders(preferred) {
  const family = families.find(f => f.name === $('model-family').value);
  $('model').replaceChildren(...family.builders.map(b => option(b.name, b.name)));
  if (family.builders.some(b => b.name === preferred)) $('model').value = preferred;
  showWeights();
}

function showWeights() {
  const builder = builderOf($('model').value);
  const choices = builder.weights.map(w => option(w.tag, `${w.tag}${w.tag === builder.defaultWeights ? ' (default)' : ''} · ${w.categories} classes · ${(w.numParams / 1e6).toFixed(1)}M parameters`));
  if (builder.bundled) choices.unshift(option('bundled', 'bundled (ships with the app)'));
  $('weights').replaceChildren(...choices);
  showPreprocessing();
}

function showPreprocessing() {
  const builder = builderOf($('model').value);
  const p = builder.weights.find(w => w.tag === $('weights').value)?.preprocessing ?? builder.preprocessing;
  const numbers = values => values.map(v => +v.toFixed(3)).join(', ');
  $('preprocessing').textContent = `input ${p.cropSize}×${p.cropSize} · resize ${p.resizeSize} then ${p.resize} · ${p.interpolation} · ${p.channelOrder.toUpperCase()}`
    + (p.meanImage ? ' minus a mean image' : '') + ` · mean [${numbers(p.mean)}] std [${numbers(p.std)}]`;
}

$('model-family').addEventListener('change', () => showBuilders(null));
$('model').addEventListener('change', showWeights);
$('weights').addEventListener('change', showPreprocessing);

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
  const spec = merge({
    model: $('model').value, weights: { source: $('weights').value },
    dataset: { resize: $('resize').value }, training: { epochs: Number($('epochs').value) },
  }, extra);
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

loadModels();
refreshRuns();
setInterval(refreshRun, 1000);
setInterval(refreshRuns, 5000);
