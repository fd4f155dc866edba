// Drives llmux with the real Node `openai` and `portkey-ai` SDKs, unchanged but for baseURL.
// Usage: node clients.mjs BASE_URL GATEWAY_KEY   (BASE_URL like http://127.0.0.1:8787/v1)
import OpenAI from 'openai';
import { Portkey } from 'portkey-ai';

const [baseURL, key] = process.argv.slice(2);
let passed = 0;
function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  passed++;
}

const openai = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });
const { data, response } = await openai.chat.completions
  .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hi' }] },
          { headers: { 'x-portkey-trace-id': 'node-openai-trace' } })
  .withResponse();
check(data.object === 'chat.completion', `object: ${data.object}`);
check(data.choices[0].message.content, 'content');
check(response.headers.get('x-portkey-trace-id') === 'node-openai-trace', 'trace id echoed');

const stream = await openai.chat.completions.create({
  model: 'gpt-4o', messages: [{ role: 'user', content: 'Count' }], stream: true,
});
let text = '';
for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
check(text.length > 0, 'openai stream text');

const emb = await openai.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
check(emb.data.length === 1, 'embeddings');

// Portkey SDK: key in x-portkey-api-key, config inline as snake_case JSON, trace id.
const portkey = new Portkey({
  apiKey: key,
  baseURL,
  config: { strategy: { mode: 'fallback' }, targets: [{ virtual_key: 'openai-main' }, { virtual_key: 'anthropic-main' }] },
});
const res = await portkey.chat.completions.create(
  { model: 'gpt-4o', messages: [{ role: 'user', content: 'Say hi' }] },
  { traceID: 'node-portkey-trace', metadata: { _user: 'node-user', plan: 'paid' } },
);
check(res.choices[0].message.content, 'portkey content');
const pstream = await portkey.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Count' }], stream: true });
let ptext = '';
for await (const chunk of pstream) ptext += chunk.choices[0]?.delta?.content ?? '';
check(ptext.length > 0, 'portkey stream text');

// Portkey SDK with a conditional config: its `metadata` chooses the target.
const conditional = new Portkey({
  apiKey: key,
  baseURL,
  config: {
    strategy: {
      mode: 'conditional',
      conditions: [{ query: { 'metadata.plan': { $eq: 'paid' } }, then: 'smart' }],
      default: 'cheap',
    },
    targets: [
      { name: 'smart', virtual_key: 'openai-main' },
      { name: 'cheap', virtual_key: 'anthropic-main', override_params: { model: 'claude-3-haiku-20240307' } },
    ],
  },
});
for (const plan of ['paid', 'free']) {
  const r = await conditional.chat.completions.create(
    { model: 'gpt-4o', messages: [{ role: 'user', content: 'Say hi' }] },
    { traceID: `node-cond-${plan}`, metadata: { plan } },
  );
  check(r.choices[0].message.content, `conditional ${plan} content`);
}

// The Responses API: native (openai-main) and translated (anthropic-main) accounts.
for (const vk of ['openai-main', 'anthropic-main']) {
  const opts = { headers: { 'x-portkey-virtual-key': vk } };
  const r = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Say hi', instructions: 'Be brief.' }, opts);
  check(r.status === 'completed' && r.output_text.startsWith('Hello from mock'), `${vk}: responses.create ${r.output_text}`);
  const next = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Again', previous_response_id: r.id }, opts);
  check(next.previous_response_id === r.id, `${vk}: chained`);
  const got = await openai.responses.retrieve(next.id, opts);
  check(got.id === next.id, `${vk}: retrieve`);
  const events = [];
  const stream = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Count', stream: true }, opts);
  for await (const e of stream) events.push(e.type);
  check(events[0] === 'response.created' && events.at(-1) === 'response.completed', `${vk}: stream events ${events.join(',')}`);
  check(events.includes('response.output_text.delta'), `${vk}: deltas`);
  await openai.responses.del(next.id, opts);
}

let refused = false;
try {
  await new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 }).chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }] });
} catch (e) {
  refused = e.status === 401;
}
check(refused, 'wrong key refused with 401');

console.log(`${passed} passed, 0 failed`);
