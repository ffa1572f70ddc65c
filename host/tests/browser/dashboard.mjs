// Drives the admin dashboard in Debian's headless Chromium (no downloaded browser builds),
// for host/tests/admin.rs, which starts the proxy, backends and load first.
//
//   node dashboard.mjs http://127.0.0.1:PORT/ OUTDIR [TARGET.wasm]
//
// Checks that the charts have data for every backend, that the latest-requests table fills
// with scores, then swaps the policy through the page's selector and waits for the swap
// marker and the new routing mode. Prints one JSON line (the last line of stdout) and
// exits 0 on success, 1 on failure; saves OUTDIR/dashboard.png either way.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, outDir, target = 'sma.wasm'] = process.argv.slice(2);
if (!url || !outDir) {
  console.error('usage: node dashboard.mjs URL OUTDIR [TARGET.wasm]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const BACKENDS_MIN_POINTS = 3;
const result = { ok: false, url: url.replace(/token=[^&]+/, 'token=***'), steps: [] };
const step = (name, data = {}) => {
  result.steps.push({ name, ...data });
  console.error(`[dashboard] ${name} ${JSON.stringify(data)}`);
};

mkdirSync(outDir, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'switchyard-chromium-'));
let context;
let page;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1400, height: 1250 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 60_000,
  });
  page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  // Fail on any request that leaves the admin server: the page must need no CDN.
  const origin = new URL(url).origin;
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) foreign.push(r.url());
  });

  await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
  await page.waitForFunction(() => window.__dashboard && window.__dashboard.snapshots >= 1, null, { timeout: 15_000 });
  step('loaded');

  // Charts have data for every backend, shares are non-zero, the table fills with scores.
  const data = await page.waitForFunction(
    (min) => {
      const d = window.__dashboard;
      if (!d || d.backends.length < 3) return false;
      const pointsOk = d.backends.every((id) => (d.latencyPoints[id] || 0) >= min);
      const shareOk = d.backends.every((id) => (d.share[id] || 0) > 0);
      const tableOk = d.rows >= 5 && d.scoredRows >= 5;
      return pointsOk && shareOk && tableOk && d.ticks >= 2
        ? { backends: d.backends, latencyPoints: d.latencyPoints, share: d.share, rows: d.rows, scoredRows: d.scoredRows, routingMode: d.routingMode }
        : false;
    },
    BACKENDS_MIN_POINTS,
    { timeout: 60_000, polling: 250 },
  );
  const before = await data.jsonValue();
  step('charts and table filled', before);
  const cells = await page.$$eval('#latest-body tr:first-child td', (tds) => tds.map((t) => t.textContent));
  const header = await page.$$eval('#latest-head th', (ths) => ths.map((t) => t.textContent));
  step('table row', { header, cells });
  const scoreCells = cells.slice(5).filter((c) => /^\d+(\.\d+)?$/.test(c));
  if (scoreCells.length < 1) throw new Error(`no numeric scores in the first table row: ${JSON.stringify(cells)}`);
  const shown = await page.textContent('#routing-mode');
  if (shown !== before.routingMode) throw new Error(`routing mode shown ${shown}, model ${before.routingMode}`);

  // Swap through the page's selector, as an operator would.
  const options = await page.$$eval('#policy-select option', (os) => os.map((o) => o.value));
  if (!options.includes(target)) throw new Error(`${target} not offered by the selector: ${options.join(', ')}`);
  const swapMarkersBefore = await page.evaluate(() => window.__dashboard.markers.filter((m) => m.kind === 'swap').length);
  await page.selectOption('#policy-select', target);
  await page.click('#policy-swap');
  const swapped = await page.waitForFunction(
    () => {
      const d = window.__dashboard;
      const s = d.swaps[d.swaps.length - 1];
      return s ? s : false;
    },
    null,
    { timeout: 20_000 },
  );
  const swap = await swapped.jsonValue();
  step('swap answered', swap);
  if (!swap.ok) throw new Error(`swap refused: ${JSON.stringify(swap)}`);

  const after = await (
    await page.waitForFunction(
      ({ before, n }) => {
        const d = window.__dashboard;
        const swaps = d.markers.filter((m) => m.kind === 'swap');
        const rows = Array.from(document.querySelectorAll('#latest-body td.rm')).map((t) => t.textContent);
        return d.routingMode !== before && swaps.length > n && d.markersDrawn >= 1 && rows.includes(d.routingMode)
          ? { routingMode: d.routingMode, swapMarkers: swaps, markersDrawn: d.markersDrawn, shown: document.getElementById('routing-mode').textContent }
          : false;
      },
      { before: before.routingMode, n: swapMarkersBefore },
      { timeout: 20_000, polling: 250 },
    )
  ).jsonValue();
  step('swap marker and routing mode', after);
  if (after.shown !== after.routingMode) throw new Error(`header shows ${after.shown}`);
  if (after.routingMode !== swap.to) throw new Error(`routing mode ${after.routingMode}, swap said ${swap.to}`);

  // Let the chart scroll a little past the marker so the screenshot shows both sides.
  await page.waitForTimeout(2500);
  if (consoleErrors.length) throw new Error(`console errors: ${consoleErrors.join(' | ')}`);
  if (foreign.length) throw new Error(`requests left the admin server: ${foreign.join(', ')}`);
  result.ok = true;
  result.before = before.routingMode;
  result.after = after.routingMode;
  result.swap = swap;
  result.latencyPoints = before.latencyPoints;
  result.share = before.share;
  result.rows = before.rows;
  result.markers = after.swapMarkers;
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
  if (page) {
    result.dashboard = await page.evaluate(() => window.__dashboard).catch(() => null);
  }
} finally {
  if (page) {
    const shot = join(outDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true }).catch((e) => (result.screenshotError = String(e)));
    result.screenshot = shot;
  }
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
