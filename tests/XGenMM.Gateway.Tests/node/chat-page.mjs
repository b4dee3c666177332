// Drives the gateway's chat page in Debian's Chromium (playwright-core, no downloaded browser) as a person would.
// Input: one JSON argument {scenario: "answer" | "stop", baseUrl, apiKey, image, question, followUp?, maxTokens?,
// screenshot?}. Output: the last stdout line is a JSON object of what was observed; the C# test asserts on it.
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
  }));
  if (input.screenshot) await page.screenshot({ path: input.screenshot, fullPage: true });
  return { connected, pastedAndDropped, overlayHidden, previews, previewsAfterRemove, first: firstResult, followUp, hubError, restoredPrompt, layout };
}

async function stopScenario(page) {
  const connected = await openAndConnect(page);
  await page.click('#settings-toggle');
  await page.fill('#max-tokens', String(input.maxTokens));
  await page.check('#ignore-eos');
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

const browser = await chromium.launch({ executablePath: input.chromium ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
let exitCode = 0;
try {
  // The answer scenario runs at a phone's width, the stop scenario at a desktop's.
  const viewport = input.scenario === 'answer' ? { width: 390, height: 844 } : { width: 1280, height: 800 };
  const page = await browser.newPage({ viewport });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.setDefaultTimeout(30000);
  const result = input.scenario === 'stop' ? await stopScenario(page) : await answerScenario(page);
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
