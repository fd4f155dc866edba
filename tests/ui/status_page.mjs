// Drives the llmux status page in a real (headless) Chromium and checks what a person would see.
//
//   node tests/ui/status_page.mjs <admin url> <screenshot path> <expectations json>
//
// Run by tests/status_page.rs, which starts llmux and a mock provider, sends traffic, and
// makes one target fail once this script prints READY. Exits 0 when every check passes,
// 1 with the reasons otherwise (and 2 on the overall timeout). Screenshots: <path> (1280x800),
// <path>-full.png, <path>-phone.png (390x844) and <path>-phone-full.png; <path>-failure.png
// when a check fails.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const [adminUrl, shotPath, expectJson] = process.argv.slice(2);
if (!adminUrl || !shotPath || !expectJson) {
  console.error('usage: node tests/ui/status_page.mjs <admin url> <screenshot path> <expectations json>');
  process.exit(64);
}
const want = JSON.parse(expectJson);
const OVERALL_MS = want.overall_timeout_ms ?? 100_000;
const STEP_MS = 15_000;
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const stem = shotPath.replace(/\.png$/, '');
mkdirSync(dirname(shotPath), { recursive: true });

let browser = null;
const log = (msg) => process.stderr.write(`[status_page] ${msg}\n`);

// Hard stop: a hung browser must not hang the test. Closing the browser kills its processes.
const watchdog = setTimeout(async () => {
  log(`overall timeout after ${OVERALL_MS} ms`);
  try { await browser?.close(); } catch { /* already gone */ }
  process.exit(2);
}, OVERALL_MS);

class CheckFailed extends Error {}
function check(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

// Console errors, by phase: before the token is entered the browser itself reports the 401
// answers as "Failed to load resource"; that is expected there and nowhere else.
const problems = [];
let phase = 'locked';
function onConsole(msg) {
  if (msg.type() !== 'error') return;
  const text = msg.text();
  const loc = msg.location();
  if (phase === 'locked' && /status of 401/.test(text)) return;
  problems.push(`console error (${phase}): ${text}${loc && loc.url ? ` at ${loc.url}:${loc.lineNumber}` : ''}`);
}
function onPageError(err) {
  problems.push(`page error (${phase}): ${err && err.stack ? err.stack : err}`);
}

async function waitFor(page, what, fn, arg, timeout = STEP_MS) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (e) {
    throw new CheckFailed(`${what}: not seen within ${timeout} ms`);
  }
}

async function main() {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  context.setDefaultTimeout(STEP_MS);
  // The page must not reach anything but the admin listener.
  const origin = new URL(adminUrl).origin;
  const foreign = [];
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith(origin + '/') || u.startsWith('data:')) return route.continue();
    foreign.push(u);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('console', onConsole);
  page.on('pageerror', onPageError);

  const resp = await page.goto(`${origin}/ui`, { waitUntil: 'load' });
  check(resp && resp.ok(), `GET /ui answered ${resp && resp.status()}`);

  // 1. Admin token: asked for once on the page, kept in sessionStorage.
  if (want.token) {
    await waitFor(page, 'the admin token form', () => {
      const a = document.getElementById('auth');
      return a && !a.hidden && document.getElementById('token');
    });
    await page.fill('#token', want.token);
    phase = 'unlocked';
    await page.press('#token', 'Enter');
  } else {
    phase = 'unlocked';
  }
  const names = want.targets;
  await waitFor(page, `target cards for ${names.join(', ')}`, (names) =>
    names.every((n) => document.querySelector(`.card[data-target="${CSS.escape(n)}"]`)), names);
  check(await page.isHidden('#auth'), 'the token form is still shown after entering the token');
  if (want.token) {
    const stored = await page.evaluate(() => sessionStorage.getItem('llmux.adminToken'));
    check(stored === want.token, 'the admin token is not kept in sessionStorage');
    // A reload uses the stored token: no form, no 401.
    phase = 'reloaded';
    await page.reload({ waitUntil: 'load' });
    await waitFor(page, 'target cards after a reload', (n) => document.querySelectorAll('.card[data-target]').length === n, names.length);
    check(await page.isHidden('#auth'), 'the token form came back after a reload despite the stored token');
  }

  // 2. Every target healthy before the failure, state written in words.
  for (const n of names) {
    const card = page.locator(`.card[data-target="${n}"]`);
    check(await card.getAttribute('data-state') === 'healthy', `${n} is not shown healthy at the start`);
    const pillText = (await card.locator('.card-head .pill').innerText()).trim();
    check(/^healthy$/i.test(pillText), `${n}: state pill reads "${pillText}", expected the word Healthy`);
  }
  for (const n of want.rate_limited || []) {
    const t = await page.locator(`.card[data-target="${n}"] .budget`).allInnerTexts();
    check(t.some((x) => /requests\/min/.test(x) && /\//.test(x)), `${n}: no requests/min budget bar (${t.join(' | ')})`);
  }

  // 3. The configured weights and the served shares in the config tree.
  for (const w of want.weights) {
    const leaf = page.locator(`[data-config="${w.config}"] li[data-path="${w.path}"]`).first();
    await leaf.waitFor({ state: 'visible' });
    const txt = (await leaf.locator(':scope > .node-row .weight-pct').innerText()).replace(/\s+/g, ' ');
    check(txt.startsWith(w.percent), `${w.config} ${w.path}: weight shows "${txt}", expected ${w.percent}`);
  }
  if (want.cache_summary) {
    await waitFor(page, `cache summary "${want.cache_summary}"`, (t) => {
      const el = document.getElementById('cache-summary');
      return el && el.textContent.replace(/\s+/g, ' ').includes(t) && /MiB/.test(el.textContent);
    }, want.cache_summary);
  }
  // Spend by model, and the canary comparison on the leaves.
  if (want.spend_model) {
    await waitFor(page, `spend for ${want.spend_model}`, (m) => {
      const row = document.querySelector(`#spend tr[data-model="${CSS.escape(m)}"]`);
      return row && /\$\d/.test(row.textContent);
    }, want.spend_model);
    const leafperf = await page.locator(`[data-config="canary"] li[data-path="config.targets[0]"] > .node-row .leafperf`).innerText();
    check(/p50 .+ errors .+\$/.test(leafperf), `canary leaf shows no latency / errors / cost: "${leafperf}"`);
  }
  // Conditional nodes say so, and each target shows the conditions that choose it.
  for (const c of want.conditions || []) {
    const leaf = page.locator(`[data-config="${c.config}"] li[data-path="${c.path}"]`).first();
    await leaf.waitFor({ state: 'visible' });
    const txt = await leaf.locator(':scope > .node-row .cond').innerText();
    check(txt.includes(c.when), `${c.config} ${c.path}: shows "${txt}", expected "${c.when}"`);
    const mode = await page.locator(`[data-config="${c.config}"] li[data-mode="conditional"] > .node-row .mode`).first().innerText();
    check(/conditional/i.test(mode), `${c.config}: the node reads "${mode}", expected Conditional`);
  }
  for (const sv of want.served || []) {
    const sel = `[data-config="${sv.config}"] li[data-path="${sv.path}"] > .node-row .served`;
    await waitFor(page, `${sv.config} ${sv.path} served ${sv.count}`, ([sel, n]) => {
      const el = document.querySelector(sel);
      return el && el.getAttribute('data-served-count') === String(n) && el.textContent.includes(`${n} req`);
    }, [sel, sv.count]);
  }

  // 4. Live update: the test makes a target fail now; the page must say so within a few seconds.
  process.stdout.write('READY\n');
  const failing = want.failing_target;
  const t0 = Date.now();
  await waitFor(page, `${failing} shown unhealthy`, (n) => {
    const c = document.querySelector(`.card[data-target="${CSS.escape(n)}"]`);
    return c && c.getAttribute('data-state') === 'unhealthy' && /unhealthy/i.test(c.querySelector('.pill').textContent);
  }, failing, want.unhealthy_within_ms ?? 20_000);
  log(`${failing} shown unhealthy ${Date.now() - t0} ms after READY`);
  const sub = await page.locator(`.card[data-target="${failing}"] .sub`).innerText();
  check(/circuit open/.test(sub) && /probe/.test(sub), `${failing}: no circuit/retry time shown ("${sub}")`);
  const codes = await page.locator(`.card[data-target="${failing}"] .codes`).innerText();
  check(/500\s*×/.test(codes), `${failing}: the 500s are not counted by status ("${codes}")`);
  // The tree shows the leaf's live state too.
  await waitFor(page, `${failing} unhealthy in the config tree`, (n) =>
    [...document.querySelectorAll(`li[data-virtual-key="${CSS.escape(n)}"] > .node-row .pill`)].some((p) => p.dataset.state === 'unhealthy'), failing);

  // 5. The trace-id filter shows exactly that request and its attempt path.
  const tr = want.trace;
  await page.fill('#trace-filter', tr.trace_id);
  await waitFor(page, `the trace card for ${tr.trace_id}`, (id) => {
    const cards = document.querySelectorAll('#trace-detail .trace');
    return cards.length === 1 && cards[0].getAttribute('data-trace-id') === id;
  }, tr.trace_id);
  const rows = await page.locator('#requests-body tr[data-trace-id]').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-trace-id')));
  check(rows.length === 1 && rows[0] === tr.trace_id, `the table shows ${JSON.stringify(rows)} for trace ${tr.trace_id}`);
  const attempts = await page.locator('#trace-detail .attempt').evaluateAll((els) => els.map((e) => ({
    virtual_key: e.dataset.virtualKey, path: e.dataset.path, status: Number(e.dataset.status),
    answered: e.classList.contains('answered'), text: e.innerText,
  })));
  check(attempts.length === tr.attempts.length,
    `trace ${tr.trace_id}: ${attempts.length} attempts shown, expected ${tr.attempts.length}: ${JSON.stringify(attempts)}`);
  tr.attempts.forEach((a, i) => {
    const got = attempts[i];
    check(got.virtual_key === a.virtual_key && got.path === a.path && got.status === a.status && got.answered === a.answered,
      `trace ${tr.trace_id} attempt ${i + 1}: shown ${JSON.stringify(got)}, expected ${JSON.stringify(a)}`);
    check(new RegExp(`${a.status}\\s+${a.answered ? 'answered' : 'failed'}`).test(got.text),
      `trace ${tr.trace_id} attempt ${i + 1} does not say in words that it ${a.answered ? 'answered' : 'failed'}: "${got.text}"`);
  });
  check(await page.evaluate(() => location.hash) === `#trace=${encodeURIComponent(tr.trace_id)}`, 'the trace filter is not kept in the URL');
  const facts = await page.locator('#trace-detail .facts').innerText();
  for (const f of tr.facts || []) check(facts.includes(f), `trace ${tr.trace_id}: "${f}" not shown in ${JSON.stringify(facts)}`);
  // Metadata: "key=value" shows exactly the requests that carried it.
  const mf = want.metadata_filter;
  await page.fill('#trace-filter', mf.query);
  await waitFor(page, `the requests with metadata ${mf.query}`, (ids) => {
    const got = [...document.querySelectorAll('#requests-body tr[data-trace-id]')].map((r) => r.getAttribute('data-trace-id'));
    return JSON.stringify(got) === JSON.stringify(ids);
  }, mf.trace_ids);
  // A Responses API request: its card names the endpoint.
  if (want.responses_trace) {
    await page.fill('#trace-filter', want.responses_trace);
    await waitFor(page, `the responses request ${want.responses_trace}`, (id) => {
      const card = document.querySelector(`#trace-detail .trace[data-trace-id="${CSS.escape(id)}"]`);
      return card && / · responses/.test(card.textContent);
    }, want.responses_trace);
  }
  // A trace id nobody used: says so, shows no card.
  await page.fill('#trace-filter', 'no-such-trace-id-0');
  await waitFor(page, 'the "no request" note for an unknown trace id', () =>
    !document.querySelector('#trace-detail .trace') && /No logged request has the trace id/.test(document.getElementById('trace-detail').textContent));
  await page.fill('#trace-filter', tr.trace_id);
  await waitFor(page, `the trace card for ${tr.trace_id} again`, (id) =>
    document.querySelector(`#trace-detail .trace[data-trace-id="${CSS.escape(id)}"]`), tr.trace_id);

  // 6. Traffic chart, reload status, no secrets.
  await waitFor(page, 'bars in the traffic chart', () => document.querySelectorAll('#chart svg rect.bar-ok').length > 0);
  const reloadText = await page.locator('#reload-body').innerText();
  check(/No reload since start|reload (succeeded|failed)/.test(reloadText), `reload status not shown: "${reloadText}"`);
  const html = await page.content();
  for (const secret of want.secrets || []) check(!html.includes(secret), 'a provider key appears in the page');
  check(!html.includes('[redacted]'), 'a redacted api_key field is rendered');

  // 7. Screenshots: desktop, then phone width without horizontal scrolling.
  await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.waitForTimeout(300);
  await page.screenshot({ path: shotPath });
  await page.screenshot({ path: `${stem}-full.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(400);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `at 390 px wide the page scrolls sideways by ${overflow} px`);
  await page.screenshot({ path: `${stem}-phone.png` });
  await page.screenshot({ path: `${stem}-phone-full.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // Let a few more polls run to catch late errors.
  await page.waitForTimeout(2000);
  check(foreign.length === 0, `the page requested other origins: ${foreign.join(', ')}`);
  check(problems.length === 0, `console/page errors:\n  ${problems.join('\n  ')}`);
}

let code = 0;
try {
  await main();
  log(`all checks passed; screenshots: ${shotPath}, ${stem}-full.png, ${stem}-phone.png, ${stem}-phone-full.png`);
} catch (e) {
  code = 1;
  log(`FAILED: ${e instanceof CheckFailed ? e.message : e && e.stack ? e.stack : e}`);
  if (problems.length) log(`console/page errors so far:\n  ${problems.join('\n  ')}`);
  try {
    const pages = browser ? browser.contexts().flatMap((c) => c.pages()) : [];
    if (pages[0]) {
      await pages[0].screenshot({ path: `${stem}-failure.png`, fullPage: true, timeout: 5000 });
      log(`failure screenshot: ${stem}-failure.png`);
    }
  } catch { /* best effort */ }
} finally {
  try { await browser?.close(); } catch { /* already gone */ }
  clearTimeout(watchdog);
}
process.exit(code);
