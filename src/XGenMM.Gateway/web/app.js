// The gateway's chat page: a SignalR client of /hubs/chat (official @microsoft/signalr browser client, window.signalR).
// The page keeps the conversation (text and images) and sends all of it with every turn, under one conversationId,
// so follow-up questions reach the decoder that still holds the conversation's prefix.

const signalR = window.signalR;
const KEY_STORAGE = 'xgenmm.apiKey';
const SETTINGS_STORAGE = 'xgenmm.settings';

const el = (id) => document.getElementById(id);
const KEY_PROMPT = document.getElementById('key-prompt-text').textContent.replace(/\s+/g, ' ').trim();
const ui = {
  model: el('model'), modelCard: el('model-card'), modelCardBar: el('model-card-bar'), status: el('status'), newChat: el('new-chat'), settingsToggle: el('settings-toggle'), settings: el('settings'),
  keyForm: el('key-form'), apiKey: el('api-key'), forgetKey: el('forget-key'), keyError: el('key-error'),
  maxTokens: el('max-tokens'), maxTokensDefault: el('max-tokens-default'), temperature: el('temperature'), topP: el('top-p'), seed: el('seed'),
  limits: el('limits'), conversation: el('conversation'), empty: el('empty'),
  composer: el('composer'), attachments: el('attachments'), composerError: el('composer-error'), fileInput: el('file-input'),
  keyPrompt: el('key-prompt'), keyPromptText: el('key-prompt-text'), keyPromptOpen: el('key-prompt-open'),
  prompt: el('prompt'), send: el('send'), stop: el('stop'), dropOverlay: el('drop-overlay'),
};

const state = {
  connection: null,
  connected: false,
  /** Why there is no connection when the key is to blame: 'missing' or 'refused' (the composer asks for a key). */
  keyProblem: null,
  info: null,
  /** Completed turns: {role, content, images: [base64]}. */
  history: [],
  conversationId: newConversationId(),
  /** Images waiting to be sent: {id, name, base64, dataUrl}. */
  attachments: [],
  /** The turn being generated: {subscription, finish(kind, error)}. */
  active: null,
  /** The last answered turn, which Regenerate replaces: {user, userView, answerView, historyLength}. */
  lastTurn: null,
};

// ---- connection ----------------------------------------------------------------------------------------------------

function setStatus(kind, text) {
  ui.status.dataset.state = kind;
  ui.status.textContent = text ?? kind;
  updateButtons();
}

async function connect() {
  const previous = state.connection;
  state.connection = null;
  state.connected = false;
  if (previous) await previous.stop().catch(() => {});
  showKeyError(null);
  const key = localStorage.getItem(KEY_STORAGE) ?? '';
  state.keyProblem = key ? null : 'missing';
  if (!key) {
    setStatus('disconnected', 'no API key');
    openSettings(true);
    return;
  }
  const connection = new signalR.HubConnectionBuilder()
    .withUrl('hubs/chat', { accessTokenFactory: () => localStorage.getItem(KEY_STORAGE) ?? '' })
    .withAutomaticReconnect()
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  connection.onreconnecting(() => { if (state.connection === connection) { state.connected = false; setStatus('connecting', 'reconnecting…'); } });
  connection.onreconnected(() => { if (state.connection === connection) { state.connected = true; setStatus('connected', 'connected'); loadInfo(); } });
  connection.onclose(() => { if (state.connection === connection) { state.connected = false; setStatus('error', 'disconnected'); } });
  state.connection = connection;
  setStatus('connecting', 'connecting…');
  try {
    await connection.start();
  } catch (e) {
    if (state.connection !== connection) return;
    state.connection = null;
    const refused = e?.statusCode === 401 || /\b401\b/.test(String(e?.message));
    state.keyProblem = refused ? 'refused' : null;
    setStatus('error', refused ? 'key refused' : 'cannot connect');
    showKeyError(refused ? 'The gateway refused this API key (401).' : `Cannot connect to the gateway: ${e?.message ?? e}`);
    openSettings(true);
    return;
  }
  if (state.connection !== connection) return;
  state.connected = true;
  showComposerError(null); // a "not connected" from before the key is no longer true
  setStatus('connected', 'connected');
  await loadInfo();
}

async function loadInfo() {
  try {
    const info = await state.connection.invoke('Info');
    state.info = info;
    ui.model.textContent = info.model;
    // What the model knows, so nobody mistakes a test model's nonsense for a broken page.
    ui.modelCard.textContent = info.modelCard ?? '';
    ui.modelCard.title = info.modelCard ?? '';
    ui.modelCardBar.hidden = !info.modelCard;
    ui.limits.textContent = `Context ${info.contextLength} tokens · up to ${info.maxImagesPerRequest} image(s) per request, ` +
      `${formatBytes(info.maxImageBytes)} each · at most ${info.maxCompletionTokens} new tokens (default ${info.defaultMaxTokens}).`;
    ui.maxTokens.max = String(info.maxCompletionTokens);
    ui.maxTokens.placeholder = String(info.defaultMaxTokens);
    ui.maxTokensDefault.textContent = `(default ${info.defaultMaxTokens})`;
    if (!ui.maxTokens.value) ui.maxTokens.value = String(info.defaultMaxTokens);
  } catch (e) {
    ui.limits.textContent = `Could not read the model's limits: ${hubError(e)}`;
  }
}

function showKeyError(text) {
  ui.keyError.hidden = !text;
  ui.keyError.textContent = text ?? '';
}

function openSettings(open) {
  ui.settings.hidden = !open;
  ui.settingsToggle.setAttribute('aria-expanded', String(open));
  if (open && !ui.apiKey.value) ui.apiKey.focus();
}

ui.settingsToggle.addEventListener('click', () => openSettings(ui.settings.hidden));

ui.keyForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const key = ui.apiKey.value.trim();
  if (!key) { showKeyError('Enter an API key.'); return; }
  localStorage.setItem(KEY_STORAGE, key);
  connect().then(() => { if (state.connected) openSettings(false); });
});

ui.forgetKey.addEventListener('click', () => {
  localStorage.removeItem(KEY_STORAGE);
  ui.apiKey.value = '';
  connect();
});

// ---- sampling settings -----------------------------------------------------------------------------------------------

const settingInputs = [ui.maxTokens, ui.temperature, ui.topP, ui.seed];

function loadSettings() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) ?? '{}') ?? {}; } catch { saved = {}; }
  ui.maxTokens.value = saved.maxTokens ?? '';
  ui.temperature.value = saved.temperature ?? '0';
  ui.topP.value = saved.topP ?? '1';
  ui.seed.value = saved.seed ?? '';
}

function saveSettings() {
  localStorage.setItem(SETTINGS_STORAGE, JSON.stringify({
    maxTokens: ui.maxTokens.value, temperature: ui.temperature.value, topP: ui.topP.value, seed: ui.seed.value,
  }));
}

for (const input of settingInputs) input.addEventListener('change', saveSettings);

/** The sampling part of a turn, or throws an Error whose message is shown to the user. */
function readSampling() {
  const number = (input, name, { integer = false, min = -Infinity, max = Infinity, optional = false } = {}) => {
    const raw = input.value.trim();
    if (raw === '') {
      if (optional) return null;
      throw new Error(`${name} is missing.`);
    }
    const value = Number(raw);
    if (!Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max)
      throw new Error(`${name} must be ${integer ? 'a whole number' : 'a number'}${min > -Infinity ? ` from ${min}` : ''}${max < Infinity ? ` to ${max}` : ''}.`);
    return value;
  };
  const maxAllowed = state.info?.maxCompletionTokens ?? Infinity;
  return {
    maxTokens: number(ui.maxTokens, 'Max tokens', { integer: true, min: 1, max: maxAllowed, optional: true }),
    temperature: number(ui.temperature, 'Temperature', { min: 0, max: 2 }),
    topP: number(ui.topP, 'Top p', { min: 0.000001, max: 1 }),
    seed: number(ui.seed, 'Seed', { integer: true, min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, optional: true }),
  };
}

// ---- attachments -----------------------------------------------------------------------------------------------------

let attachmentIds = 0;

async function addFiles(files) {
  showComposerError(null);
  const images = [...files].filter((f) => f.type.startsWith('image/'));
  if (images.length < files.length) showComposerError('Only images can be attached.');
  const limit = state.info?.maxImagesPerRequest ?? Infinity;
  const maxBytes = state.info?.maxImageBytes ?? Infinity;
  for (const file of images) {
    if (imagesInConversation() + state.attachments.length >= limit) {
      showComposerError(`A request takes at most ${limit} image(s), counting the images earlier in this conversation. Start a new chat for more.`);
      break;
    }
    if (file.size > maxBytes) {
      showComposerError(`${file.name || 'The image'} is ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}.`);
      continue;
    }
    const dataUrl = await readDataUrl(file);
    state.attachments.push({ id: ++attachmentIds, name: file.name || 'pasted image', dataUrl, base64: dataUrl.slice(dataUrl.indexOf(',') + 1) });
  }
  renderAttachments();
}

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function renderAttachments() {
  ui.attachments.replaceChildren(...state.attachments.map((a) => {
    const thumb = document.createElement('div');
    thumb.className = 'thumb';
    const img = document.createElement('img');
    img.src = a.dataUrl;
    img.alt = a.name;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove';
    remove.textContent = '×';
    remove.title = `Remove ${a.name}`;
    remove.setAttribute('aria-label', `Remove ${a.name}`);
    remove.addEventListener('click', () => {
      state.attachments = state.attachments.filter((x) => x.id !== a.id);
      showComposerError(null);
      renderAttachments();
    });
    thumb.append(img, remove);
    return thumb;
  }));
  updateButtons();
}

function imagesInConversation() {
  return state.history.reduce((n, m) => n + (m.images?.length ?? 0), 0);
}

ui.fileInput.addEventListener('change', async () => {
  await addFiles(ui.fileInput.files);
  ui.fileInput.value = '';
});

ui.prompt.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
  if (files.length === 0) return;
  e.preventDefault();
  addFiles(files);
});

let dragDepth = 0;
const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
document.addEventListener('dragenter', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth++;
  ui.dropOverlay.hidden = false;
});
document.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
document.addEventListener('dragleave', (e) => {
  if (!hasFiles(e)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) ui.dropOverlay.hidden = true;
});
document.addEventListener('drop', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  ui.dropOverlay.hidden = true;
  addFiles(e.dataTransfer.files);
});

// ---- conversation --------------------------------------------------------------------------------------------------

function messageView(role, text, images = []) {
  const view = document.createElement('article');
  view.className = `message ${role}`;
  if (images.length > 0) {
    const strip = document.createElement('div');
    strip.className = 'images';
    for (const src of images) {
      const img = document.createElement('img');
      img.src = src;
      img.alt = 'attached image';
      strip.append(img);
    }
    view.append(strip);
  }
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  const meta = document.createElement('div');
  meta.className = 'meta';
  view.append(body, meta);
  ui.empty.hidden = true;
  ui.conversation.append(view);
  return { view, body, meta };
}

function nearBottom() {
  const c = ui.conversation;
  return c.scrollHeight - c.scrollTop - c.clientHeight < 80;
}

function scrollToEnd() {
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
}

/** The sampling settings when a turn can be sent now; otherwise null, with the reason shown by the composer and the
 * settings opened where it can be fixed (no key yet, or a setting out of range). */
function readyToSend() {
  if (!state.connected) {
    showComposerError('Not connected: enter an API key first.');
    openSettings(true);
    return null;
  }
  try {
    const sampling = readSampling();
    showComposerError(null);
    return sampling;
  } catch (e) {
    showComposerError(e.message);
    openSettings(true);
    return null;
  }
}

function send() {
  if (state.active) return;
  const text = ui.prompt.value.trim();
  const attachments = state.attachments;
  if (!text && attachments.length === 0) return;
  const sampling = readyToSend();
  if (!sampling) return;

  const user = { role: 'user', content: text, images: attachments.map((a) => a.base64) };
  const userView = messageView('user', text, attachments.map((a) => a.dataUrl));
  ui.prompt.value = '';
  state.attachments = [];
  renderAttachments();
  autoGrow();
  generate(user, userView, sampling, attachments);
}

/** Asks again for the last answer: the same user turn (text and images) with the current sampling settings replaces it. */
function regenerate() {
  if (state.active || !state.lastTurn) return;
  const sampling = readyToSend();
  if (!sampling) return;
  const { user, userView, answerView, historyLength } = state.lastTurn;
  state.history.length = historyLength;
  answerView.remove();
  generate(user, userView, sampling, null);
}

/**
 * Streams the answer to <user> after the history. <attachments> are the composer's images of a new question (given
 * back when it fails); a regenerated turn has none to give back.
 */
function generate(user, userView, sampling, attachments) {
  const answer = messageView('assistant', '');
  answer.view.dataset.state = 'streaming';
  userView.view.classList.remove('failed');
  scrollToEnd();
  const historyLength = state.history.length;
  // Only the newest answer can be asked again; a turn that fails hands that back to the answer before it.
  const previous = state.lastTurn;
  state.lastTurn = null;
  for (const old of ui.conversation.querySelectorAll('.message.assistant .regenerate')) old.remove();
  const restorePrevious = () => {
    if (!previous || !previous.answerView.isConnected) return;
    state.lastTurn = previous;
    addRegenerate(previous.answerView);
  };

  const turn = {
    conversationId: state.conversationId,
    messages: [...state.history, user],
    maxTokens: sampling.maxTokens,
    temperature: sampling.temperature,
    topP: sampling.topP,
    seed: sampling.seed,
  };
  let content = '';
  let last = null;
  let tokens = 0;
  const started = performance.now();

  const active = { subscription: null, finish: null };
  const finish = (kind, error) => {
    if (state.active !== active) return;
    state.active = null;
    answer.view.dataset.state = kind;
    if (kind === 'done' || (kind === 'stopped' && content)) {
      // A partial answer still belongs to the conversation.
      state.history.push(user, { role: 'assistant', content });
      answer.meta.textContent = kind === 'done'
        ? describe(last)
        : `stopped after ${tokens} token(s), ${((performance.now() - started) / 1000).toFixed(1)} s`;
      state.lastTurn = { user, userView, answerView: answer.view, historyLength };
      addAnswerActions(answer.view, content);
    } else if (kind === 'stopped') {
      // With nothing said yet the turn is dropped.
      userView.view.classList.add('failed');
      restorePrevious();
      answer.meta.textContent = `stopped after ${tokens} token(s), ${((performance.now() - started) / 1000).toFixed(1)} s`;
    } else {
      userView.view.classList.add('failed');
      const box = document.createElement('div');
      box.className = 'error';
      box.setAttribute('role', 'alert');
      box.textContent = hubError(error);
      answer.view.append(box);
      answer.meta.textContent = 'not added to the conversation';
      restorePrevious();
      // Give the question back for another try when the composer is still empty.
      if (attachments && !ui.prompt.value && state.attachments.length === 0) {
        ui.prompt.value = user.content;
        state.attachments = attachments;
        renderAttachments();
        autoGrow();
      }
    }
    updateButtons();
    scrollToEnd();
  };

  active.finish = finish;
  state.active = active;
  updateButtons();
  active.subscription = state.connection.stream('Chat', turn).subscribe({
    next: (delta) => {
      const stick = nearBottom();
      if (delta.text) {
        content += delta.text;
        answer.body.textContent = content;
      }
      if (delta.finishReason) last = delta;
      else tokens++;
      if (stick) scrollToEnd();
    },
    complete: () => finish('done'),
    error: (e) => finish('error', e),
  });
}

/** Copy on every answer; Regenerate only on the newest one (it replaces that answer). */
function addAnswerActions(view, content) {
  const actions = document.createElement('div');
  actions.className = 'actions';
  const copy = document.createElement('button');
  copy.type = 'button';
  copy.className = 'ghost copy';
  copy.textContent = 'Copy';
  copy.title = 'Copy this answer to the clipboard';
  copy.addEventListener('click', async () => {
    const ok = await copyText(content);
    copy.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { copy.textContent = 'Copy'; }, 2000);
  });
  actions.append(copy);
  view.append(actions);
  addRegenerate(view);
}

function addRegenerate(view) {
  const again = document.createElement('button');
  again.type = 'button';
  again.className = 'ghost regenerate';
  again.textContent = 'Regenerate';
  again.title = 'Ask the last question again for a new answer';
  again.addEventListener('click', regenerate);
  view.querySelector('.actions')?.append(again);
}

/** The async clipboard exists only in secure contexts (https, localhost); a gateway reached over plain http elsewhere
 * still copies through a selected textarea. */
async function copyText(text) {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch { /* permission refused: try the old way */ }
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  area.remove();
  return ok;
}

/** Stops the answer being generated: disposing the subscription cancels the stream and the server cancels the generation. */
function stop() {
  const active = state.active;
  if (!active) return;
  active.subscription?.dispose();
  active.finish('stopped');
}

function describe(final) {
  if (!final) return '';
  const parts = [final.finishReason === 'length' ? 'stopped at max tokens' : final.finishReason === 'stop' ? 'done' : final.finishReason];
  const u = final.usage;
  if (u) parts.push(`${u.promptTokens} prompt${u.imageTokens ? ` (${u.imageTokens} image)` : ''} + ${u.completionTokens} completion tokens`);
  const t = final.timings;
  if (t) parts.push(`first token ${t.timeToFirstTokenSeconds.toFixed(2)} s, total ${t.endToEndSeconds.toFixed(2)} s`);
  return parts.join(' · ');
}

/**
 * A hub error's own text: the server sends "STATUS code: message" after the client's "...HubException: " preamble,
 * and for a refusal that says when to come back a last line "Retry-After: SECONDS", shown here in words.
 */
function hubError(e) {
  const message = String(e?.message ?? e ?? 'unknown error');
  const match = /HubException: ([\s\S]*)$/.exec(message);
  const text = match ? match[1] : message;
  const retry = /\nRetry-After: (\d+)\s*$/.exec(text);
  return retry ? `${text.slice(0, retry.index)} (Try again in ${retry[1]} s.)` : text;
}

function newChat() {
  if (state.active) stop();
  state.history = [];
  state.lastTurn = null;
  state.conversationId = newConversationId();
  for (const m of ui.conversation.querySelectorAll('.message')) m.remove();
  ui.empty.hidden = false;
  showComposerError(null);
  ui.prompt.focus();
}

function newConversationId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return Array.from({ length: 4 }, () => Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0')).join('');
}

function showComposerError(text) {
  ui.composerError.hidden = !text;
  ui.composerError.textContent = text ?? '';
}

function updateButtons() {
  const busy = state.active !== null;
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  // Send stays usable without a connection: pressing it says why nothing can be sent, and the key prompt above says so
  // before anyone tries.
  ui.send.disabled = !ui.prompt.value.trim() && state.attachments.length === 0;
  ui.keyPrompt.hidden = state.connected || !state.keyProblem;
  ui.keyPromptText.textContent = state.keyProblem === 'refused'
    ? 'The gateway refused this API key: enter the key it printed when it started.'
    : KEY_PROMPT;
  for (const b of ui.conversation.querySelectorAll('.message .regenerate')) b.disabled = busy;
}

function autoGrow() {
  ui.prompt.style.height = 'auto';
  ui.prompt.style.height = `${ui.prompt.scrollHeight + 2}px`;
}

function formatBytes(n) {
  if (!Number.isFinite(n)) return String(n);
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(n % (1 << 20) ? 1 : 0)} MB`;
  if (n >= 1 << 10) return `${Math.round(n / (1 << 10))} KB`;
  return `${n} B`;
}

ui.composer.addEventListener('submit', (e) => { e.preventDefault(); send(); });
ui.keyPromptOpen.addEventListener('click', () => { openSettings(true); ui.apiKey.focus(); });
// On a phone the card is clamped to three lines; a tap shows all of it.
ui.modelCard.addEventListener('click', () => ui.modelCard.classList.toggle('expanded'));
ui.stop.addEventListener('click', stop);
ui.newChat.addEventListener('click', newChat);
ui.prompt.addEventListener('input', () => { autoGrow(); updateButtons(); });
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});

// ---- start -----------------------------------------------------------------------------------------------------------

loadSettings();
ui.apiKey.value = localStorage.getItem(KEY_STORAGE) ?? '';
updateButtons();
connect();
