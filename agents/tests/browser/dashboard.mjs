// The dashboard as an operator sees it, in Debian's chromium driven by playwright-core.
//
//   node dashboard.mjs URL OUT_DIR
//
// Checks, against a running `wattchain up`: the page loads with no console error, the live
// stream connects, the four plots draw and their values change, a new block appears, the
// record search proves a committed window (the same block hash as the API says), and the
// page fits a phone's width. Saves dashboard-desktop.png and dashboard-phone.png in OUT_DIR.
// Exits 1 with the reason on the first failed check. Every wait is bounded.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node dashboard.mjs URL OUT_DIR");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const WAIT = 30000;
const profile = mkdtempSync(join(tmpdir(), "wattchain-chromium-"));
const problems = [];
const note = (m) => console.log("dashboard: " + m);

function fail(message) {
  throw new Error(message);
}

async function watchConsole(page) {
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.stack || e.message}`));
  page.on("requestfailed", (r) => {
    // An event stream cut by the page's own navigation or close is not a failure.
    if (!r.url().includes("/api/v1/events")) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

/// Pixels of `canvas` that are not transparent (the plot really drew).
async function inkedPixels(page, selector) {
  return page.$eval(selector, (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
}

async function plotsDraw(page) {
  for (const q of ["U", "I", "PA", "PR"]) {
    const sel = `.cabinet .q[data-q="${q}"] canvas`;
    await page.waitForFunction((s) => Number(document.querySelector(s)?.dataset.points || 0) >= 3, sel, { timeout: WAIT });
    const ink = await inkedPixels(page, sel);
    if (ink < 500) fail(`plot ${q} drew only ${ink} pixels`);
  }
}

const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1600, height: 1000 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

let code = 0;
try {
  const page = await browser.newPage();
  await watchConsole(page);
  await page.goto(url, { waitUntil: "load", timeout: WAIT });
  await page.waitForSelector("#live.badge.ok", { timeout: WAIT });
  note("live stream connected");
  await page.waitForSelector(".cabinet[data-cabinet]", { timeout: WAIT });
  await plotsDraw(page);
  note("four plots drawn");

  // Values move: the plots' latest points and the numbers beside them.
  const before = await page.$$eval(".cabinet .q canvas", (cs) => cs.map((c) => c.dataset.last + "/" + c.dataset.points));
  const beforeText = await page.$$eval(".cabinet .q .value", (vs) => vs.map((v) => v.textContent));
  await page.waitForFunction(
    (prev) => [...document.querySelectorAll(".cabinet .q canvas")].some((c, i) => c.dataset.last + "/" + c.dataset.points !== prev[i]),
    before,
    { timeout: WAIT },
  );
  await page.waitForFunction(
    (prev) => [...document.querySelectorAll(".cabinet .q .value")].some((v, i) => v.textContent !== prev[i]),
    beforeText,
    { timeout: WAIT },
  );
  note("values change over time");

  // A block appears while we watch.
  await page.waitForSelector("#blocks li.block", { timeout: WAIT });
  const firstHead = Number(await page.$eval("#blocks li.block", (li) => li.dataset.index));
  await page.waitForFunction((h) => Number(document.querySelector("#blocks li.block")?.dataset.index) > h, firstHead, { timeout: WAIT });
  note(`a new block appeared after #${firstHead}`);

  // A committed window, proved through the search form, as the API proves it.
  await page.waitForSelector(".windows .committed", { timeout: WAIT });
  const row = await page.$eval(".windows tbody tr:has(.committed)", (tr) => ({
    cabinet: tr.closest(".cabinet").dataset.cabinet,
    window: tr.cells[0].textContent.replace("#", ""),
  }));
  await page.fill("#search-cabinet", row.cabinet);
  await page.fill("#search-window", row.window);
  await page.click("#search button[type=submit]");
  await page.waitForSelector("#proof .found", { timeout: WAIT });
  const shown = await page.$eval("#proof", (p) => p.textContent);
  const proof = await (await fetch(new URL(`/api/v1/records/${row.cabinet}/${row.window}`, url))).json();
  if (!shown.includes(proof.block.hash)) fail(`the proof shown does not name block hash ${proof.block.hash}: ${shown}`);
  for (const q of ["U", "I", "PA", "PR"]) {
    if (!shown.includes(proof.record.digests[q])) fail(`the proof shown lacks the ${q} digest`);
  }
  note(`record ${row.cabinet}#${row.window} proved in block #${proof.block.index}`);

  // The token box stays hidden: this server needs none.
  if (await page.isVisible("#token-box")) fail("the token box is shown on a server without a token");
  await page.screenshot({ path: join(outDir, "dashboard-desktop.png"), fullPage: true });

  // A phone.
  const phone = await browser.newPage();
  await watchConsole(phone);
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(url, { waitUntil: "load", timeout: WAIT });
  await phone.waitForSelector("#live.badge.ok", { timeout: WAIT });
  await plotsDraw(phone);
  await phone.waitForSelector("#blocks li.block", { timeout: WAIT });
  const widths = await phone.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  if (widths.scroll > widths.inner + 1) fail(`the page is wider than a phone: ${widths.scroll}px > ${widths.inner}px`);
  const plotWidth = await phone.$eval(".cabinet .q canvas", (c) => c.getBoundingClientRect().width);
  if (plotWidth < 300) fail(`plots are squeezed to ${plotWidth}px on a phone`);
  await phone.screenshot({ path: join(outDir, "dashboard-phone.png"), fullPage: true });
  note("fits a phone");

  if (problems.length) fail(problems.join("\n"));
  note("all checks passed");
} catch (e) {
  console.error("dashboard: FAILED: " + e.message);
  if (problems.length) console.error(problems.join("\n"));
  code = 1;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
