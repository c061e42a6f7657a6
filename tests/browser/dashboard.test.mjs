// The admin dashboard and the claim page in a real browser (Debian's Chromium driven by
// playwright-core): launch VMs and watch them boot without a reload, read a VM's shipped
// logs, see the startup chart, claim a VM, destroy everything. Screenshots go to
// test-output/browser/ (not committed).
//
// Run by scripts/test.sh after the debug build: node --test dashboard.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const serverBin = process.env.GPUFLEET_BIN || join(repo, 'target', 'debug', 'gpufleet');
const shots = join(repo, 'test-output', 'browser');
const password = 'browser-test-password';

let server, browser, page, baseUrl, dataDir;

function startServer() {
  dataDir = mkdtempSync(join(tmpdir(), 'gpufleet-browser-'));
  server = spawn(serverBin, ['serve', '--addr', '127.0.0.1:0', '--data-dir', dataDir, '--agent-boot-delay-secs', '3'], {
    env: { ...process.env, GPUFLEET_ADMIN_PASSWORD: password, RUST_LOG: 'warn', GPUFLEET_COLLECT_INTERVAL_SECONDS: '5', GPUFLEET_FLEET_BUDGET_USD: '100' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((ok, fail) => {
    const lines = createInterface({ input: server.stdout });
    // Log lines (warnings) may come before the one that announces the URL.
    lines.on('line', line => { if (line.startsWith('gpufleet local mode:')) ok(line.trim().split(' ').pop()); });
    server.once('exit', code => fail(new Error(`server exited with ${code}`)));
  });
}

const shot = name => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

before(async () => {
  mkdirSync(shots, { recursive: true });
  baseUrl = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({
    httpCredentials: { username: 'admin', password },
    viewport: { width: 1280, height: 900 },
  });
  page = await context.newPage();
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  // Any agent still alive exits once the server is gone (--give-up-after-secs); destroy ran.
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('admin launches 2 VMs and watches them boot without a reload', async () => {
  await page.goto(`${baseUrl}/admin`);
  await assert.doesNotReject(page.waitForSelector('h1:has-text("Fleet")'));
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.fill('#instance_count', '2');
  await page.click('#launch-form button[type=submit]');
  await page.waitForSelector('#launch-progress:not([hidden])');

  // Both rows appear initializing first (the agents "boot" for 3 s), then turn running.
  await page.waitForFunction(() => {
    const pills = [...document.querySelectorAll('#vms tbody [data-field=status]')];
    return pills.length === 2 && pills.every(p => p.textContent === 'initializing');
  }, null, { timeout: 10_000 });
  await shot('1-dashboard-initializing');
  await page.waitForFunction(() => {
    const pills = [...document.querySelectorAll('#vms tbody [data-field=status]')];
    return pills.length === 2 && pills.every(p => p.textContent === 'running');
  }, null, { timeout: 20_000 });
  await page.waitForFunction(() => document.getElementById('launch-text').textContent.startsWith('Launch finished: 2 running'), null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
  assert.equal(await page.textContent('[data-count=free]'), '2');
  await shot('2-dashboard-running');
});

test('the costs card and the cost columns show what the running fleet costs', async () => {
  await page.goto(`${baseUrl}/admin`);
  // Two g4dn.xlarge at the shipped us-east-1 list price, $0.526/h each.
  assert.equal(await page.textContent('[data-cost=per-hour]'), '$1.05');
  assert.match(await page.textContent('[data-cost=fleet-month]'), /^\$0\.\d\d$/);
  // The fleet budget counts each VM for at least its first hour: (100 - 1.052) / 0.526 → 188 more.
  assert.equal(await page.textContent('[data-cost=fleet-budget]'), '$1.05 of $100.00');
  assert.equal(await page.textContent('[data-cost=room-for]'), '188');
  const priced = async () => page.locator('#vms tbody [data-field=price]').allTextContents();
  assert.deepEqual(await priced(), ['$0.53/h', '$0.53/h']);
  assert.match(await page.getAttribute('#vms tbody [data-field=price]', 'title'), /on-demand list price, us-east-1/);
  // The live table redraws its rows every 2 s: the cost columns survive the redraw.
  await page.evaluate(() => { document.querySelector('#vms tbody tr').dataset.marker = 'old'; });
  await page.waitForFunction(() => !document.querySelector('#vms tbody tr[data-marker]'), null, { timeout: 10_000 });
  assert.deepEqual(await priced(), ['$0.53/h', '$0.53/h']);
  assert.match(await page.textContent('#vms tbody [data-field=spent]'), /^\$0\.\d\d$/);
  await page.locator('#costs').screenshot({ path: join(shots, '2b-costs.png') });
});

test('a VM\'s log page shows the lines its agent shipped, and filters errors', async () => {
  const link = page.locator('#vms tbody tr:first-child a');
  const hostname = await link.textContent();
  await link.click();
  await page.waitForURL(`**/admin/logs/${hostname}`);
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('waiting for an assignment'), null, { timeout: 15_000 });
  const lines = await page.locator('#log > div').count();
  assert.ok(lines >= 4, `expected the agent's lines, got ${lines}`);
  assert.match(await page.textContent('#log'), /GPU health healthy/);
  await shot('3-logs');
  await page.check('#errors-only');
  assert.equal(await page.locator('#log > div:visible').count(), 0, 'no error lines in a healthy boot');
  await page.uncheck('#errors-only');
  assert.equal(await page.locator('#log > div:visible').count(), lines);
});

test('the metrics page draws each VM\'s startup time', async () => {
  await page.goto(`${baseUrl}/admin/metrics`);
  await page.waitForSelector('svg#chart');
  assert.equal(await page.locator('svg#chart .vm-row').count(), 2);
  assert.equal(await page.locator('svg#chart rect.stage-agent').count(), 2);
  const median = await page.textContent('#median');
  assert.match(median, /^\d+\.\d s$/);
  assert.ok(parseFloat(median) >= 3, `the 3 s simulated boot is in the agent stage: ${median}`);
  await shot('4-metrics');
});

test('a participant claims a VM and sees its hostname and PIN', async () => {
  await page.goto(`${baseUrl}/`);
  assert.equal(await page.textContent('#free-count'), '2');
  await page.fill('#email', 'ada@example.org');
  await page.fill('#crd_command', 'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="4/0AbCdEf" --redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)');
  await page.click('button[type=submit]');
  await page.waitForSelector('#pin');
  assert.match(await page.textContent('#pin'), /^\d{6}$/);
  assert.match(await page.textContent('#hostname'), /^gpufleet-vm-[0-9a-f]{8}$/);
  await shot('5-claimed');
  await page.goto(`${baseUrl}/admin`);
  await page.waitForFunction(() => document.querySelector('[data-count=assigned]').textContent === '1');
});

test('the seat link works on another device; a stranger with the same email sees nothing', async () => {
  // The success page of the claim above carries the private seat link.
  await page.goto(`${baseUrl}/seat`);
  const hostname = await page.textContent('#hostname');
  const pin = await page.textContent('#pin');
  await page.goto(`${baseUrl}/`);
  await page.fill('#email', 'ada@example.org');
  await page.fill('#crd_command', 'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="4/0AbCdEf" --redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)');
  await page.click('button[type=submit]');
  await page.waitForSelector('#pin');
  assert.equal(await page.textContent('#pin'), pin, 'this browser holds the seat cookie');

  const other = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const stranger = await other.newPage();
  await stranger.goto(`${baseUrl}/`);
  await stranger.fill('#email', 'Ada@Example.org');
  await stranger.fill('#crd_command', 'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="4/0Stranger" --redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)');
  await stranger.click('button[type=submit]');
  await stranger.waitForSelector('#held-elsewhere');
  const body = await stranger.textContent('body');
  assert.ok(!body.includes(pin) && !body.includes(hostname), 'nothing about the seat');
  await stranger.screenshot({ path: join(shots, '6-stranger.png'), fullPage: true });
  await other.close();

  // The participant's other device: the link alone shows the seat and sends a new command.
  const seatLink = await (async () => {
    const resp = await page.request.post(`${baseUrl}/api/seats/${hostname}/reissue`);
    assert.equal(resp.status(), 200);
    return (await resp.json()).seat_link;
  })();
  const device = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const phone = await device.newPage();
  await phone.goto(seatLink);
  assert.equal(await phone.textContent('#hostname'), hostname);
  assert.match(await phone.textContent('#pin'), /^\d{6}$/);
  await phone.waitForSelector('#alive');
  await phone.fill('#crd_command', 'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="4/0FreshCode" --redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)');
  await phone.click('form[action$="/command"] button');
  await phone.waitForSelector('#message');
  assert.match(await phone.textContent('#message'), /^Sent to gpufleet-vm-/);
  await phone.screenshot({ path: join(shots, '7-seat-page.png'), fullPage: true });
  await device.close();
});

test('the admin re-issues a seat link and moves a participant from the dashboard', async () => {
  await page.goto(`${baseUrl}/admin`);
  const row = page.locator('#vms tbody tr', { has: page.locator('text=ada@example.org') });
  const hostname = await row.getAttribute('data-hostname');
  page.once('dialog', d => d.accept());
  await row.locator('button[data-action=reissue]').click();
  await page.waitForSelector('#seat-link');
  const link = await page.inputValue('#seat-link');
  assert.match(link, /\/seat\/[0-9a-f]{64}$/);
  await shot('8-dashboard-new-link');
  page.once('dialog', d => d.accept(''));
  await page.locator(`#vms tbody tr[data-hostname="${hostname}"] button[data-action=move]`).click();
  await page.waitForFunction(() => document.getElementById('seat-result').textContent.includes('moved from'));
  await page.waitForFunction(h => {
    const rows = [...document.querySelectorAll('#vms tbody tr')];
    const old = rows.find(r => r.dataset.hostname === h);
    return old && old.querySelector('[data-field=status]').textContent === 'error'
      && rows.some(r => r.dataset.hostname !== h && r.textContent.includes('ada@example.org'));
  }, hostname, { timeout: 10_000 });
  await shot('9-dashboard-moved');
  // The new link shows the new VM.
  await page.goto(link);
  assert.notEqual(await page.textContent('#hostname'), hostname);
});

test('files dropped in a VM\'s working directory show on the dashboard as participants\' work', async () => {
  await page.goto(`${baseUrl}/admin`);
  const hosts = await page.locator('#vms tbody tr').evaluateAll(rows => rows.map(r => r.dataset.hostname));
  assert.equal(hosts.length, 2);
  for (const [i, host] of hosts.entries()) {
    mkdirSync(join(dataDir, 'work', host, 'labels'), { recursive: true });
    writeFileSync(join(dataDir, 'work', host, 'labels', `session${i}.slp`), 'x'.repeat(1000 * (i + 1)));
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    await page.goto(`${baseUrl}/admin`);
    if (await page.locator('#work-files').count() === 1 && await page.textContent('#work-files') === '2') break;
    assert.ok(Date.now() < deadline, 'the agents synced the files');
    await page.waitForTimeout(1000);
  }
  assert.equal(await page.locator('#work-table tbody tr').count(), 2);
  assert.match(await page.textContent('#work-table'), /ada@example\.org/);
  await page.locator('#work').scrollIntoViewIfNeeded();
  await shot('9-participants-work');
});

test('destroy asks for confirmation, lists what goes, then removes everything', async () => {
  await page.goto(`${baseUrl}/admin`);
  assert.equal(await page.locator('#destroy-list li').count(), 2);
  assert.match(await page.textContent('#destroy-list'), /ada@example\.org/);
  await page.click('#destroy-button'); // unchecked: the browser refuses to submit
  assert.equal(await page.locator('#destroy-list li').count(), 2);
  await page.check('#destroy-confirm');
  await page.click('#destroy-button');
  await page.waitForSelector('text=Destroyed 2 VM(s).');
  assert.match(await page.textContent('.alert.ok'), /Final sync: 2 of 2 VM\(s\) answered\./);
  assert.equal(await page.locator('#vms tbody tr').count(), 0);
  // The work outlives the VMs: still listed, and the download is a zip.
  assert.equal(await page.locator('#work-table tbody tr').count(), 2);
  await shot('10-destroyed');
  const zip = await page.request.get(`${baseUrl}/api/scp-client`);
  assert.equal(zip.status(), 200);
  assert.equal(zip.headers()['content-type'], 'application/zip');
  const bytes = await zip.body();
  assert.equal(bytes.subarray(0, 4).toString('hex'), '504b0304');
  // Deleting needs the box ticked, then the card is empty.
  await page.check('#work-delete-form input[name=confirm]');
  await page.click('#work-delete-form button');
  await page.waitForSelector('text=Deleted the participants');
  assert.equal(await page.locator('#work-table').count(), 0);
  await shot('11-work-deleted');
});

test('the API reference page lists every operation of the document and opens one', async () => {
  const doc = await (await page.request.get(`${baseUrl}/openapi.json`)).json();
  assert.equal(doc.openapi, '3.1.0');
  const operations = Object.values(doc.paths).flatMap(item => Object.values(item));
  await page.goto(`${baseUrl}/docs`);
  assert.equal(await page.locator('details').count(), operations.length);
  const create = page.locator('details#create-request');
  await create.locator('summary').click();
  assert.match(await create.textContent(), /NewGpuRequest/);
  assert.match(await create.textContent(), /apiKey/);
  await create.screenshot({ path: join(shots, '12-api-reference.png') });
});
