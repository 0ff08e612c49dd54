// Drives the web console in headless Chromium (playwright-core, Debian's /usr/bin/chromium):
// loads every page, collects every number the page shows (elements with data-k), clicks through
// the message browser (partition, offset, row, JSON and hex views), produces a test message,
// takes a screenshot of each page and records browser console errors and any request that
// leaves the node. Prints `RESULT <name> <json>` lines for tests/tests/console.rs.
// Usage: node console.js BASE_URL SCREENSHOT_DIR TOPIC GROUP
"use strict";
const { chromium } = require("playwright-core");

const [base, shots, topic, group] = process.argv.slice(2);

function result(name, value) {
  console.log("RESULT " + name + " " + JSON.stringify(value));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  const external = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push("page error: " + e));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) external.push(r.url()); });

  const values = () => page.$$eval("[data-k]", (els) => Object.fromEntries(els.map((e) => [e.dataset.k, e.textContent])));
  const visit = async (hash, loaded, shot) => {
    await page.goto(base + "/#" + hash);
    await page.waitForSelector(`#page[data-loaded="${loaded}"]`, { timeout: 15000 });
    await page.screenshot({ path: `${shots}/${shot}.png`, fullPage: true });
    return values();
  };

  const views = {};
  views.overview = await visit("/overview", "overview", "overview");
  views.throughput_points = await page.getAttribute('svg[data-plot="throughput"]', "data-points");
  views.topics = await visit("/topics", "topics", "topics");
  views.groups = await visit("/groups", "groups", "groups");
  views.group = await visit("/groups/" + encodeURIComponent(group), "groups-detail", "group");
  views.group_lag_points = await page.getAttribute('svg[data-plot="group-lag"]', "data-points");
  views.assignment = await page.$$eval("[data-assignment]", (els) => els.map((e) => e.textContent));
  views.bridge = await visit("/bridge", "bridge", "bridge");
  views.bridge_lag_points = await page.getAttribute('svg[data-plot="bridge-lag"]', "data-points");
  views.mqtt = await visit("/mqtt", "mqtt", "mqtt");
  views.mqtt_subscriptions = await page.$$eval("[data-subscriptions]", (els) => Object.fromEntries(els.map((e) => [e.dataset.subscriptions, e.textContent])));
  views.mqtt_retained = await page.$$eval("[data-retained]", (els) => els.map((e) => e.dataset.retained));
  views.cluster = await visit("/cluster", "cluster", "cluster");
  views.cluster_alone = (await page.$("#cluster-none")) !== null;
  views.cluster_nav_hidden = await page.$eval("#nav-cluster", (e) => e.hidden);
  views.topic = await visit("/topics/" + encodeURIComponent(topic), "topics-detail", "topic");
  views.config_retention = await page.textContent('[data-config="retention.ms"]');
  result("views", views);

  // The message browser: the latest records of partition 0 are listed on arrival.
  const browse = {};
  await page.waitForSelector("#message-table tr[data-offset]");
  browse.initial = await page.$$eval("#message-table tr[data-offset]", (rs) => rs.map((r) => Number(r.dataset.offset)));
  // Partition 2 from offset 9, three records: offset 9 (JSON) and 10 (binary).
  await page.selectOption("#browse-partition", "2");
  await page.fill("#browse-offset", "9");
  await page.fill("#browse-limit", "3");
  await page.click("#browse-load");
  await page.waitForSelector('#message-table tr[data-offset="10"]');
  browse.p2 = await page.$$eval("#message-table tr[data-offset]", (rs) => rs.map((r) => Number(r.dataset.offset)));
  await page.click('#message-table tr[data-offset="9"]');
  await page.waitForSelector("#detail-value");
  browse.text_key = await page.textContent("#detail-key");
  browse.text_value = await page.textContent("#detail-value");
  await page.click("#view-json");
  browse.json_value = await page.textContent("#detail-value");
  browse.headers = await page.$$eval("#detail-headers tbody tr", (rs) => rs.map((r) => [r.children[0].textContent, r.children[1].textContent]));
  await page.click("#view-hex");
  browse.hex_key = await page.textContent("#detail-key");
  await page.click('#message-table tr[data-offset="10"]');
  await page.waitForSelector('[data-k="detail.offset"]');
  browse.binary_offset = await page.textContent('[data-k="detail.offset"]');
  browse.binary_value = await page.textContent("#detail-value");
  await page.screenshot({ path: `${shots}/message-browser.png`, fullPage: true });
  result("browse", browse);

  // Produce a test message from the page.
  const produce = {};
  await page.selectOption("#produce-partition", "1");
  await page.fill("#produce-key", "console-key");
  await page.fill("#produce-value", '{"from":"console"}');
  await page.fill("#produce-headers", "via=browser, n=1");
  await page.click("#produce-send");
  await page.waitForSelector('[data-k="produce.offset"]');
  produce.offset = Number(await page.textContent('[data-k="produce.offset"]'));
  await page.screenshot({ path: `${shots}/produced.png`, fullPage: true });
  result("produce", produce);

  result("errors", errors);
  result("external", external);
  await browser.close();
  console.log("OK");
}

main().catch((e) => { console.error(e); process.exit(1); });
