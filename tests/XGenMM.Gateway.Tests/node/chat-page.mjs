// Drives the gateway's chat page in Debian's Chromium (playwright-core, no downloaded browser) as a person would.
// Input: one JSON argument {scenario: "answer" | "stop" | "key" | "actions", baseUrl, apiKey, image, question, followUp?,
// maxTokens?, screenshot?}. Output: the last stdout line is a JSON object of what was observed; the C# test asserts on it.
import { chromium } from 'playwright-core';

const input = JSON.parse(process.argv[2] ?? '{}');
const log = (...args) => console.error('[chat-page]', ...args);
/** What the page logged as errors (console.error, uncaught exceptions). */
const consoleErrors = [];

/** Reads one Prometheus sample from the gateway's /metrics (0 when absent), e.g. sample('xgenmm_num_requests_running{device="cpu"}'). */
async function sample(name) {
  const text = await (await fetch(new URL('/metrics', input.baseUrl))).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

async function waitForSample(name, value, timeoutMs) {
  const started = Date.now();
  for (;;) {
    const current = await sample(name);
    if (current === value) return { value: current, ms: Date.now() - started };
    if (Date.now() - started > timeoutMs) return { value: current, ms: Date.now() - started };
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Records every turn the page streams to the hub (window.__turns) and merges <extra> into each: the official client's
 * HubConnection.stream is wrapped, so the page itself is unchanged.
 */
async function recordTurns(page, extra = {}) {
  await page.evaluate((more) => {
    window.__turns = [];
    const proto = window.signalR.HubConnection.prototype;
    const original = proto.stream;
    proto.stream = function (method, ...args) {
      if (method === 'Chat') {
        args[0] = { ...args[0], ...more };
        window.__turns.push(JSON.parse(JSON.stringify(args[0])));
      }
      return original.call(this, method, ...args);
    };
  }, extra);
}

/** Opens the page, enters the API key and waits for the hub connection and the model's limits. */
async function openAndConnect(page, { wrongKeyFirst = false } = {}) {
  await page.goto(input.baseUrl);
  // No key stored yet: the page opens its settings by itself and asks for one.
  await page.locator('#api-key').waitFor({ state: 'visible' });
  let refused = null;
  if (wrongKeyFirst) {
    await page.fill('#api-key', 'not-a-key');
    await page.click('#connect');
    await page.locator('#key-error').waitFor({ state: 'visible' });
    refused = { error: await page.textContent('#key-error'), status: await page.textContent('#status') };
    consoleErrors.length = 0; // the SignalR client logs the refused negotiation; that one is expected
  }
  await page.fill('#api-key', input.apiKey);
  await page.click('#connect');
  await page.locator('#status[data-state="connected"]').waitFor();
  await page.waitForFunction(() => document.getElementById('limits').textContent.length > 0);
  // Once connected the settings close by themselves.
  await page.locator('#settings').waitFor({ state: 'hidden', timeout: 5000 }).catch(() => {});
  return {
    refused,
    keyErrorHidden: await page.locator('#key-error').isHidden(),
    model: await page.textContent('#model'),
    limits: await page.textContent('#limits'),
    storedKey: await page.evaluate(() => localStorage.getItem('xgenmm.apiKey')),
    settingsHidden: await page.locator('#settings').isHidden(),
  };
}

/** Attaches the image through the file picker and waits for its preview. */
async function attach(page) {
  await page.setInputFiles('#file-input', input.image);
  await page.locator('#attachments .thumb img').waitFor();
  return page.locator('#attachments .thumb').count();
}

/** Counts every change of the newest answer's text, from the moment the next turn is sent. */
async function watchNextAnswer(page) {
  await page.evaluate(() => {
    window.__updates = 0;
    const known = document.querySelectorAll('.message.assistant').length;
    const observer = new MutationObserver(() => {
      const answers = document.querySelectorAll('.message.assistant');
      if (answers.length > known) window.__updates++;
    });
    observer.observe(document.getElementById('conversation'), { subtree: true, childList: true, characterData: true });
  });
}

async function ask(page, question) {
  await watchNextAnswer(page);
  await page.fill('#prompt', question);
  await page.click('#send');
  const answer = page.locator('.message.assistant').last();
  await answer.locator('.text').waitFor({ state: 'attached' });
  return answer;
}

async function answerScenario(page) {
  const connected = await openAndConnect(page, { wrongKeyFirst: true });
  // Pasting into the message box and dropping onto the page attach images as the file picker does.
  const png = (await import('node:fs')).readFileSync(input.image).toString('base64');
  await page.evaluate(async (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const file = (name) => new File([bytes], name, { type: 'image/png' });
    const pasted = new DataTransfer();
    pasted.items.add(file('pasted.png'));
    document.getElementById('prompt').dispatchEvent(new ClipboardEvent('paste', { clipboardData: pasted, bubbles: true, cancelable: true }));
    const dropped = new DataTransfer();
    dropped.items.add(file('dropped.png'));
    document.body.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dropped, bubbles: true, cancelable: true }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dropped, bubbles: true, cancelable: true }));
  }, png);
  await page.waitForFunction(() => document.querySelectorAll('#attachments .thumb').length === 2);
  const pastedAndDropped = await page.locator('#attachments .thumb img').evaluateAll((imgs) => imgs.map((i) => i.alt));
  const overlayHidden = await page.locator('#drop-overlay').isHidden();
  // The remove buttons drop the previews; the file picker attaches the question's picture.
  await page.click('#attachments .thumb .remove');
  await page.click('#attachments .thumb .remove');
  const previewsAfterRemove = await page.locator('#attachments .thumb').count();
  const previews = await attach(page);

  const first = await ask(page, input.question);
  await page.locator('#stop').waitFor({ state: 'visible' }).catch(() => {}); // may already be done
  await page.waitForFunction(() => document.querySelector('.message.assistant:last-of-type')?.dataset.state !== 'streaming', null, { timeout: 30000 });
  const firstResult = {
    state: await first.getAttribute('data-state'),
    text: await first.locator('.text').textContent(),
    meta: await first.locator('.meta').textContent(),
    updates: await page.evaluate(() => window.__updates),
    error: await first.locator('.error').count() ? await first.locator('.error').textContent() : null,
  };

  let followUp = null;
  if (input.followUp) {
    const second = await ask(page, input.followUp);
    await page.waitForFunction(() => document.querySelector('.message.assistant:last-of-type')?.dataset.state !== 'streaming', null, { timeout: 30000 });
    followUp = {
      state: await second.getAttribute('data-state'),
      text: await second.locator('.text').textContent(),
      error: await second.locator('.error').count() ? await second.locator('.error').textContent() : null,
    };
  }

  // An error from the hub shows inline: a file that claims to be a PNG but is not one is refused by the server (400 invalid_image).
  await watchNextAnswer(page);
  await page.setInputFiles('#file-input', { name: 'broken.png', mimeType: 'image/png', buffer: Buffer.from('this is not a picture') });
  await page.locator('#attachments .thumb').waitFor();
  await page.fill('#prompt', 'What is this?');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelector('.message.assistant:last-of-type')?.dataset.state === 'error', null, { timeout: 30000 });
  const hubError = await page.locator('.message.assistant').last().locator('.error').textContent();
  // The failed question comes back into the composer for another try.
  const restoredPrompt = await page.inputValue('#prompt');

  const layout = await page.evaluate(() => ({
    width: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    userImages: document.querySelectorAll('.message.user .images img').length,
    messages: document.querySelectorAll('.message').length,
    // After the failed turn, the answer before it is again the one Regenerate replaces.
    regenerateOn: [...document.querySelectorAll('.message.assistant')].map((m) => m.querySelector('.regenerate') !== null),
  }));
  if (input.screenshot) await page.screenshot({ path: input.screenshot, fullPage: true });
  return { connected, pastedAndDropped, overlayHidden, previews, previewsAfterRemove, first: firstResult, followUp, hubError, restoredPrompt, layout };
}

async function stopScenario(page) {
  const connected = await openAndConnect(page);
  // The page has no "ignore the end of the answer" switch any more; the API's ignoreEos is added to the page's turn so
  // that the answer is still streaming when stop is pressed.
  await recordTurns(page, { ignoreEos: true });
  await page.click('#settings-toggle');
  await page.fill('#max-tokens', String(input.maxTokens));
  await page.click('#settings-toggle');
  await attach(page);
  const answer = await ask(page, input.question);
  // Mid-stream: several tokens are on the page and the decoder is running the request.
  await page.waitForFunction(() => window.__updates >= 8, null, { timeout: 30000 });
  const runningBefore = await sample('xgenmm_num_requests_running{device="cpu"}');
  const stateBefore = await answer.getAttribute('data-state');
  await page.click('#stop');
  const atStop = await answer.locator('.text').textContent();
  const updatesAtStop = await page.evaluate(() => window.__updates);
  await page.waitForTimeout(1500);
  const later = await answer.locator('.text').textContent();
  const running = await waitForSample('xgenmm_num_requests_running{device="cpu"}', 0, 10000);
  const streams = await waitForSample('xgenmm_gateway_active_streams{protocol="signalr"}', 0, 10000);

  const result = {
    connected,
    stateBefore,
    runningBefore,
    state: await answer.getAttribute('data-state'),
    meta: await answer.locator('.meta').textContent(),
    updatesAtStop,
    charsAtStop: atStop.length,
    charsLater: later.length,
    sendVisible: await page.locator('#send').isVisible(),
    stopVisible: await page.locator('#stop').isVisible(),
    runningAfter: running.value,
    freedAfterMs: running.ms,
    signalrStreamsAfter: streams.value,
  };
  if (input.screenshot) await page.screenshot({ path: input.screenshot, fullPage: true });
  return result;
}

async function waitForAnswer(page) {
  await page.waitForFunction(() => document.querySelector('.message.assistant:last-of-type')?.dataset.state !== 'streaming', null, { timeout: 30000 });
}

/** No key yet: what the page asks for, what Send does; then with a key: the model card, the settings' defaults. */
async function keyScenario(page) {
  await page.goto(input.baseUrl);
  await page.locator('#api-key').waitFor({ state: 'visible' });
  const noKey = {
    promptVisible: await page.locator('#key-prompt').isVisible(),
    promptText: (await page.textContent('#key-prompt-text')).replace(/\s+/g, ' ').trim(),
    status: await page.textContent('#status'),
    sendDisabledEmpty: await page.locator('#send').isDisabled(),
  };
  await page.fill('#prompt', 'What color is the star?');
  noKey.sendDisabledWithText = await page.locator('#send').isDisabled();
  // Closing the settings and pressing Send explains itself and opens the settings again.
  await page.click('#settings-toggle');
  noKey.settingsHiddenAfterClose = await page.locator('#settings').isHidden();
  await page.click('#send');
  noKey.composerError = await page.textContent('#composer-error');
  noKey.settingsVisibleAfterSend = await page.locator('#settings').isVisible();
  noKey.messages = await page.locator('.message').count();
  await page.click('#settings-toggle');
  await page.click('#key-prompt-open');
  noKey.keyFocused = await page.evaluate(() => document.activeElement?.id === 'api-key');
  noKey.modelCardHidden = await page.locator('#model-card').isHidden();

  await page.fill('#api-key', 'not-a-key');
  await page.click('#connect');
  await page.locator('#key-error').waitFor({ state: 'visible' });
  const refused = {
    promptVisible: await page.locator('#key-prompt').isVisible(),
    promptText: (await page.textContent('#key-prompt-text')).replace(/\s+/g, ' ').trim(),
  };
  consoleErrors.length = 0; // the SignalR client logs the refused negotiation; that one is expected

  await page.fill('#api-key', input.apiKey);
  await page.click('#connect');
  await page.locator('#status[data-state="connected"]').waitFor();
  await page.waitForFunction(() => document.getElementById('limits').textContent.length > 0);
  await page.locator('#settings').waitFor({ state: 'hidden', timeout: 5000 });
  await page.click('#settings-toggle');
  await page.locator('#settings').waitFor({ state: 'visible' });
  const connected = {
    promptHidden: await page.locator('#key-prompt').isHidden(),
    composerErrorHidden: await page.locator('#composer-error').isHidden(),
    modelCard: await page.textContent('#model-card'),
    modelCardVisible: await page.locator('#model-card').isVisible(),
    modelCardClipped: await page.evaluate(() => { const c = document.getElementById('model-card'); return c.scrollHeight > c.clientHeight + 1; }),
    maxTokens: await page.inputValue('#max-tokens'),
    maxTokensPlaceholder: await page.getAttribute('#max-tokens', 'placeholder'),
    maxTokensLabel: (await page.locator('label', { has: page.locator('#max-tokens') }).textContent()).replace(/\s+/g, ' ').trim(),
    ignoreEosSwitches: await page.locator('#ignore-eos').count(),
    settingsText: await page.textContent('#settings'),
  };
  if (input.screenshot) await page.screenshot({ path: input.screenshot, fullPage: true });
  return { noKey, refused, connected };
}

/** Copy puts an answer on the clipboard; Regenerate asks the last question again and replaces the last answer. */
async function actionsScenario(page) {
  const connected = await openAndConnect(page);
  await recordTurns(page);
  await attach(page);
  const first = await ask(page, input.question);
  await waitForAnswer(page);
  const firstText = await first.locator('.text').textContent();
  const buttons = await first.locator('.actions button').allTextContents();

  await first.locator('button.copy').click();
  await page.waitForFunction(() => document.querySelector('.message.assistant button.copy')?.textContent !== 'Copy', null, { timeout: 5000 });
  const copyLabel = await first.locator('button.copy').textContent();
  const clipboard = await page.evaluate(() => navigator.clipboard.readText());

  // Regenerate: the same user turn again (greedy, so the same answer), replacing the answer in the page and history.
  await watchNextAnswer(page);
  await first.locator('button.regenerate').click();
  await page.locator('.message.assistant[data-state="streaming"], .message.assistant[data-state="done"]').last().waitFor();
  await waitForAnswer(page);
  const again = page.locator('.message.assistant').last();
  const regenerated = {
    state: await again.getAttribute('data-state'),
    text: await again.locator('.text').textContent(),
    answers: await page.locator('.message.assistant').count(),
    users: await page.locator('.message.user').count(),
    turns: await page.evaluate(() => window.__turns.map((t) => ({ messages: t.messages.map((m) => ({ role: m.role, content: m.content, images: (m.images ?? []).length })) }))),
  };

  // A follow-up: only the newest answer can be regenerated, and regenerating it keeps the first exchange.
  await ask(page, input.followUp);
  await waitForAnswer(page);
  const afterFollowUp = {
    regenerateButtons: await page.locator('.message.assistant .regenerate').count(),
    copyButtons: await page.locator('.message.assistant .copy').count(),
    lastHasRegenerate: await page.locator('.message.assistant').last().locator('.regenerate').count(),
  };
  await page.locator('.message.assistant').last().locator('button.regenerate').click();
  await page.waitForFunction(() => window.__turns.length === 4, null, { timeout: 10000 });
  await waitForAnswer(page);
  const lastTurn = await page.evaluate(() => window.__turns[3].messages.map((m) => ({ role: m.role, content: m.content, images: (m.images ?? []).length })));
  afterFollowUp.lastTurn = lastTurn;
  afterFollowUp.answers = await page.locator('.message.assistant').count();
  afterFollowUp.lastText = await page.locator('.message.assistant').last().locator('.text').textContent();
  if (input.screenshot) await page.screenshot({ path: input.screenshot, fullPage: true });
  return { connected, firstText, buttons, copyLabel, clipboard, regenerated, afterFollowUp };
}

const browser = await chromium.launch({ executablePath: input.chromium ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
let exitCode = 0;
try {
  // The answer scenario runs at a phone's width, the stop scenario at a desktop's.
  const viewport = input.scenario === 'answer' ? { width: 390, height: 844 } : { width: 1280, height: 800 };
  // Copy is read back from the clipboard, which needs the permissions a person grants by using the page.
  const page = await browser.newPage({ viewport, permissions: ['clipboard-read', 'clipboard-write'] });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.setDefaultTimeout(30000);
  const scenarios = { stop: stopScenario, key: keyScenario, actions: actionsScenario, answer: answerScenario };
  const result = await (scenarios[input.scenario] ?? answerScenario)(page);
  result.consoleErrors = consoleErrors;
  console.log(JSON.stringify(result));
} catch (e) {
  log(e?.stack ?? String(e));
  console.log(JSON.stringify({ error: String(e?.message ?? e) }));
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
