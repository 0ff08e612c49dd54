// Loads one page of the web console in headless Chromium (playwright-core) and prints what it
// shows: `RESULT page {"values": {data-k: text}, "tables": [[[cell, ...], ...], ...], "errors":
// [...]}` and takes a screenshot. Usage: node console_page.js BASE_URL HASH LOADED SCREENSHOT
"use strict";
const { chromium } = require("playwright-core");

const [base, hash, loaded, shot] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push("page error: " + e));
  await page.goto(base + "/#" + hash);
  await page.waitForSelector(`#page[data-loaded="${loaded}"]`, { timeout: 15000 });
  const values = await page.$$eval("[data-k]", (els) => Object.fromEntries(els.map((e) => [e.dataset.k, e.textContent])));
  const tables = await page.$$eval("#page table", (ts) => ts.map((t) =>
    Array.from(t.querySelectorAll("tbody tr")).map((r) => Array.from(r.children).map((c) => c.textContent))));
  const nav = await page.$eval("#nav-cluster", (e) => !e.hidden);
  await page.screenshot({ path: shot, fullPage: true });
  console.log("RESULT page " + JSON.stringify({ values, tables, errors, cluster_tab: nav }));
  await browser.close();
  console.log("OK");
}

main().catch((e) => { console.error(e); process.exit(1); });
