// The web console on a node with admin tokens, in headless Chromium (playwright-core): the page
// loads without a token, asks for one when the API answers 401, shows the overview with a read
// token, and shows the 403 of a write made with that read token. Prints `RESULT <name> <json>`.
// Usage: node console_token.js BASE_URL READ_TOKEN TOPIC SCREENSHOT_DIR
"use strict";
const { chromium } = require("playwright-core");

const [base, token, topic, shots] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox"],
  });
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push("page error: " + e));
  const auth = [];
  page.on("request", (r) => { if (r.url().includes("/api/v1/")) auth.push(r.headers()["authorization"] || null); });

  const out = {};
  await page.goto(base + "/#/overview");
  await page.waitForSelector("#token-form:not([hidden])", { timeout: 15000 });
  out.asked = await page.textContent("#error");
  await page.fill("#token", token);
  await page.click('#token-entry button[type="submit"]');
  await page.waitForSelector('#page[data-loaded="overview"]', { timeout: 15000 });
  out.topics = await page.textContent('[data-k="overview.topics"]');
  await page.screenshot({ path: `${shots}/token-overview.png`, fullPage: true });
  await page.goto(base + "/#/topics/" + encodeURIComponent(topic));
  await page.waitForSelector('#page[data-loaded="topics-detail"]', { timeout: 15000 });
  await page.fill("#produce-value", "from a read token");
  await page.click("#produce-send");
  await page.waitForSelector("#error:not([hidden])", { timeout: 15000 });
  out.write_error = await page.textContent("#error");
  out.auth = auth;
  out.errors = errors;
  console.log("RESULT token " + JSON.stringify(out));
  await browser.close();
  console.log("OK");
}

main().catch((e) => { console.error(e); process.exit(1); });
