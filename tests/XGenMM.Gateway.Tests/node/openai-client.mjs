// The official OpenAI npm client, unmodified, pointed at the gateway's /v1.
// Input: one JSON argument {baseURL, apiKey, model, image, question, describe}. Output: the last stdout line is a JSON
// object of what the client returned (or the error it raised) for each call; the C# test asserts on it.
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

const input = JSON.parse(process.argv[2] ?? '{}');
const client = new OpenAI({ apiKey: input.apiKey, baseURL: input.baseURL, maxRetries: 0, timeout: 60_000 });
const imageUrl = `data:image/png;base64,${readFileSync(input.image).toString('base64')}`;

const ask = (text, extra = {}) => ({
  model: input.model,
  messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: imageUrl } }, { type: 'text', text }] }],
  max_tokens: 16,
  temperature: 0,
  ...extra,
});

/** The client's typed error, as the fields a caller would look at. */
function describeError(e) {
  return {
    class: e?.constructor?.name,
    isApiError: e instanceof OpenAI.APIError,
    isAuthenticationError: e instanceof OpenAI.AuthenticationError,
    isBadRequestError: e instanceof OpenAI.BadRequestError,
    status: e?.status ?? null,
    type: e?.type ?? null,
    code: e?.code ?? null,
    param: e?.param ?? null,
    message: e?.message ?? String(e),
  };
}

async function expectError(call) {
  try {
    const result = await call();
    return { unexpectedSuccess: result };
  } catch (e) {
    return describeError(e);
  }
}

async function main() {
  const models = await client.models.list();
  const modelIds = [];
  for await (const m of models) modelIds.push(m.id);

  // Non-streaming, with the image as a data URL.
  const plain = await client.chat.completions.create(ask(input.question));

  // Streaming with usage in a final chunk (stream_options.include_usage).
  const stream = await client.chat.completions.create(ask(input.question, { stream: true, stream_options: { include_usage: true } }));
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const withChoices = chunks.filter((c) => c.choices.length > 0);
  const streamed = {
    chunks: chunks.length,
    content: withChoices.map((c) => c.choices[0].delta?.content ?? '').join(''),
    contentChunks: withChoices.filter((c) => c.choices[0].delta?.content).length,
    firstRole: withChoices[0]?.choices[0].delta?.role ?? null,
    ids: [...new Set(chunks.map((c) => c.id))],
    objects: [...new Set(chunks.map((c) => c.object))],
    finishReasons: withChoices.map((c) => c.choices[0].finish_reason).filter((r) => r),
    usageChunks: chunks.filter((c) => c.usage).length,
    lastHasNoChoices: chunks.at(-1)?.choices.length === 0,
    usage: chunks.at(-1)?.usage ?? null,
  };

  // Streaming without include_usage: no usage anywhere.
  const bare = await client.chat.completions.create(ask(input.question, { stream: true }));
  let bareUsageChunks = 0;
  let bareContent = '';
  for await (const chunk of bare) {
    if (chunk.usage) bareUsageChunks++;
    bareContent += chunk.choices[0]?.delta?.content ?? '';
  }

  // Stop sequences: a longer answer, then the same request cut at a piece of its middle.
  const full = await client.chat.completions.create(ask(input.describe, { max_tokens: 24 }));
  const fullText = full.choices[0].message.content ?? '';
  const stopAt = Math.floor(fullText.length / 2);
  const stop = fullText.slice(stopAt, stopAt + 2);
  const cut = stop.length === 2 ? await client.chat.completions.create(ask(input.describe, { max_tokens: 24, stop: [stop] })) : null;
  const cutStream = stop.length === 2 ? await client.chat.completions.create(ask(input.describe, { max_tokens: 24, stop: [stop], stream: true })) : null;
  let cutStreamText = '';
  let cutStreamFinish = null;
  if (cutStream) {
    for await (const chunk of cutStream) {
      cutStreamText += chunk.choices[0]?.delta?.content ?? '';
      cutStreamFinish = chunk.choices[0]?.finish_reason ?? cutStreamFinish;
    }
  }

  // n choices (sampled, seeded): one completion with choices by index, streamed and not, the same texts either way.
  const several = { n: 2, seed: 11, temperature: 1, max_tokens: 8 };
  const multi = await client.chat.completions.create(ask(input.question, several));
  const multiStream = await client.chat.completions.create(ask(input.question, { ...several, stream: true, stream_options: { include_usage: true } }));
  const multiStreamed = { content: {}, finishReasons: {}, usage: null, ids: new Set() };
  for await (const chunk of multiStream) {
    multiStreamed.ids.add(chunk.id);
    if (chunk.usage) multiStreamed.usage = chunk.usage;
    for (const c of chunk.choices) {
      multiStreamed.content[c.index] = (multiStreamed.content[c.index] ?? '') + (c.delta?.content ?? '');
      if (c.finish_reason) multiStreamed.finishReasons[c.index] = c.finish_reason;
    }
  }

  // Log probabilities (greedy, 3 alternatives), non-streamed and streamed.
  const withLogprobs = await client.chat.completions.create(ask(input.question, { temperature: 0, max_tokens: 6, logprobs: true, top_logprobs: 3 }));
  const logprobStream = await client.chat.completions.create(ask(input.question, { temperature: 0, max_tokens: 6, logprobs: true, top_logprobs: 3, stream: true }));
  const streamedLogprobs = [];
  for await (const chunk of logprobStream) for (const c of chunk.choices) streamedLogprobs.push(...(c.logprobs?.content ?? []));

  // Errors as the client raises them.
  const badKey = await expectError(() => new OpenAI({ apiKey: 'not-a-key', baseURL: input.baseURL, maxRetries: 0 }).chat.completions.create(ask(input.question)));
  const tooManyTokens = await expectError(() => client.chat.completions.create(ask(input.question, { max_tokens: 1_000_000 })));
  // An image that cannot be decoded: 400 (BadRequestError) as OpenAI and vLLM answer it, the reason in the code.
  const notAPicture = `data:image/png;base64,${Buffer.from('this is not a picture').toString('base64')}`;
  const invalidImage = await expectError(() => client.chat.completions.create({
    ...ask(input.question),
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: notAPicture } }, { type: 'text', text: input.question }] }],
  }));
  const badStreamKey = await expectError(async () => {
    const s = await new OpenAI({ apiKey: 'not-a-key', baseURL: input.baseURL, maxRetries: 0 }).chat.completions.create(ask(input.question, { stream: true }));
    for await (const _ of s) { /* drain */ }
    return 'streamed';
  });

  return {
    clientVersion: JSON.parse(readFileSync(new URL('./node_modules/openai/package.json', import.meta.url), 'utf8')).version,
    modelIds,
    plain: {
      id: plain.id,
      object: plain.object,
      model: plain.model,
      content: plain.choices[0].message.content,
      role: plain.choices[0].message.role,
      finishReason: plain.choices[0].finish_reason,
      usage: plain.usage,
    },
    streamed,
    bare: { usageChunks: bareUsageChunks, content: bareContent },
    stop: {
      full: fullText,
      stop,
      cut: cut?.choices[0].message.content ?? null,
      cutFinishReason: cut?.choices[0].finish_reason ?? null,
      cutStream: cutStreamText,
      cutStreamFinishReason: cutStreamFinish,
    },
    choices: {
      indexes: multi.choices.map((c) => c.index),
      contents: multi.choices.map((c) => c.message.content),
      finishReasons: multi.choices.map((c) => c.finish_reason),
      usage: multi.usage,
      streamedContents: Object.keys(multiStreamed.content).sort().map((k) => multiStreamed.content[k]),
      streamedFinishReasons: Object.keys(multiStreamed.finishReasons).sort().map((k) => multiStreamed.finishReasons[k]),
      streamedIds: multiStreamed.ids.size,
      streamedUsage: multiStreamed.usage,
    },
    logprobs: {
      content: withLogprobs.choices[0].logprobs?.content ?? null,
      text: withLogprobs.choices[0].message.content,
      streamed: streamedLogprobs,
    },
    errors: { badKey, tooManyTokens, badStreamKey, invalidImage },
  };
}

try {
  console.log(JSON.stringify(await main()));
} catch (e) {
  console.error('[openai-client]', e?.stack ?? String(e));
  console.log(JSON.stringify({ error: describeError(e) }));
  process.exit(1);
}
