// Drives headless Chromium through the gallery, album and admin pages of a running gateway.
// Started by tests/browser_gallery.rs, which seeds the album and passes everything in PHOTOS_*.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("PHOTOS_GATEWAY");
const albumId = env("PHOTOS_ALBUM_ID");
const albumTitle = env("PHOTOS_ALBUM_TITLE");
const adminToken = env("PHOTOS_ADMIN_TOKEN");
const uploadFile = env("PHOTOS_UPLOAD_FILE");
const artifacts = env("PHOTOS_ARTIFACTS");
const require = createRequire(path.join(env("PHOTOS_PLAYWRIGHT_DIR"), "package.json"));
const { chromium } = require("playwright-core");

const log = (...a) => console.log("[browser]", ...a);

async function photosOfAlbum() {
  const r = await fetch(`${base}/api/v1/albums/${albumId}/photos?page_size=100`);
  assert.equal(r.status, 200, "the album's photos through the API");
  return (await r.json()).photos;
}

function rgb(hex) {
  const n = parseInt(hex.replace("#", "").slice(0, 6), 16);
  return `rgb(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255})`;
}

const photos = await photosOfAlbum();
const byId = new Map(photos.map((p) => [p.id, p]));
const urlsOf = (p) => new Set(p.sources.map((s) => s.url));
const webpOf = (p) => new Set(p.sources.filter((s) => s.format === "webp").map((s) => s.url));
const storageOrigin = new URL(photos[0].sources[0].url).origin;
log(`${photos.length} photos; images from ${storageOrigin}`);

const browser = await chromium.launch({
  executablePath: process.env.PHOTOS_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 390, height: 700 } });
  const page = await context.newPage();
  // CSP violations and script errors surface here; the pages must produce none.
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("response", (r) => r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`));
  const requested = [];
  page.on("request", (r) => r.resourceType() === "image" && requested.push(r.url()));

  // Gallery: the album's card with its title and a loaded cover preview.
  await page.goto(`${base}/`);
  const card = page.locator(`li.album-card[data-id="${albumId}"]`);
  await card.waitFor();
  assert.equal(await card.locator(".name").textContent(), albumTitle);
  await page.waitForFunction(
    (id) => {
      const img = document.querySelector(`li.album-card[data-id="${id}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    },
    albumId,
  );
  await page.screenshot({ path: path.join(artifacts, "gallery.png") });
  log("gallery renders the album with its cover");

  // Album page, with image responses held until the placeholders have been seen.
  let release;
  const gate = new Promise((r) => (release = r));
  await page.route((url) => url.origin === storageOrigin, async (route) => {
    await gate;
    await route.continue();
  });
  requested.length = 0;
  await page.goto(`${base}/albums/${albumId}`, { waitUntil: "domcontentloaded" });
  const tiles = page.locator("figure.tile");
  await page.waitForFunction(() => document.querySelectorAll("figure.tile").length > 0);
  const firstPage = await tiles.count();
  assert.ok(firstPage < photos.length, `a first page (${firstPage}) smaller than the album`);
  // Bounded: a page that never asks for an image fails here instead of hanging the test.
  for (let i = 0; requested.length === 0; i++) {
    if (i >= 1000) throw new Error("no image was requested within 20 s of the album rendering");
    await page.waitForTimeout(20);
  }

  const first = photos[0];
  const held = await page.evaluate((id) => {
    const frame = document.querySelector(`figure.tile[data-id="${id}"] .frame`);
    const img = frame.querySelector("img");
    const style = getComputedStyle(frame);
    return {
      placeholder: frame.classList.contains("placeholder"),
      color: style.backgroundColor,
      image: style.backgroundImage,
      opacity: getComputedStyle(img).opacity,
      loaded: img.complete && img.naturalWidth > 0,
    };
  }, first.id);
  assert.equal(held.placeholder, true, "the first tile waits behind its placeholder");
  assert.equal(held.loaded, false, "the first image is still held back");
  assert.equal(held.color, rgb(first.placeholders.dominant_color), "dominant colour shown");
  assert.ok(held.image.startsWith('url("data:image/'), `blur placeholder shown: ${held.image.slice(0, 40)}`);
  assert.equal(held.opacity, "0", "the unloaded image is transparent over its placeholder");
  log("placeholder (dominant colour + blur) visible before the image loads");

  release();
  await page.waitForFunction((id) => {
    const frame = document.querySelector(`figure.tile[data-id="${id}"] .frame`);
    return frame.classList.contains("loaded");
  }, first.id);
  await page.waitForLoadState("networkidle");

  const order = await tiles.evaluateAll((ts) => ts.map((t) => t.dataset.id));
  const wasRequested = (id) => [...urlsOf(byId.get(id))].some((u) => requested.includes(u));
  const fetched = order.filter(wasRequested);
  const last = order[order.length - 1];
  log(`before scrolling: ${fetched.length} of ${order.length} tiles requested`);
  assert.ok(wasRequested(order[0]), "the first tile was requested");
  assert.ok(!wasRequested(last), "the last tile of the page was not requested before scrolling");
  const tops = await tiles.evaluateAll((ts) => ts.map((t) => t.getBoundingClientRect().top));
  const height = await page.evaluate(() => innerHeight);
  order.forEach((id, i) => {
    if (!wasRequested(id)) assert.ok(tops[i] > height, `tile ${i} is below the fold`);
  });
  for (const url of requested.filter((u) => u.startsWith(storageOrigin))) {
    const owner = photos.find((p) => urlsOf(p).has(url));
    assert.ok(owner && webpOf(owner).has(url), `only WebP variants were requested, got ${url}`);
  }
  const chosen = await page.evaluate(
    (id) => document.querySelector(`figure.tile[data-id="${id}"] img`).currentSrc,
    first.id,
  );
  assert.ok(webpOf(first).has(chosen), `the WebP source is chosen: ${chosen}`);
  log("WebP chosen; tiles below the fold not requested");

  await page.locator(`figure.tile[data-id="${last}"]`).scrollIntoViewIfNeeded();
  await page.waitForFunction((id) => {
    const img = document.querySelector(`figure.tile[data-id="${id}"] img`);
    return img.complete && img.naturalWidth > 0;
  }, last);
  assert.ok(wasRequested(last), "the last tile is requested once scrolled to");
  assert.ok(webpOf(byId.get(last)).has(await page.evaluate(
    (id) => document.querySelector(`figure.tile[data-id="${id}"] img`).currentSrc, last)));
  await page.screenshot({ path: path.join(artifacts, "album.png") });

  // Keyset "load more" brings the rest, each photo once.
  await page.locator("#more").click();
  await page.waitForFunction((n) => document.querySelectorAll("figure.tile").length === n, photos.length);
  const all = await tiles.evaluateAll((ts) => ts.map((t) => t.dataset.id));
  assert.deepEqual(all, photos.map((p) => p.id), "load more appends the next page in order");
  assert.equal(await page.locator("#more").isHidden(), true, "no further page");
  log(`load more: ${all.length} photos`);

  // Admin: save the token, upload to the album, see the photo on the album page.
  await page.goto(`${base}/admin`);
  await page.fill("#token", adminToken);
  await page.click("#token-form button[type=submit]");
  await page.locator(`#upload-album option[value="${albumId}"]`).waitFor({ state: "attached" });
  await page.selectOption("#upload-album", albumId);
  await page.fill("#upload-title", "From the admin page");
  await page.setInputFiles("#upload-file", uploadFile);
  await page.click("#upload-form button[type=submit]");
  const result = page.locator("#upload-results li");
  await result.first().waitFor();
  assert.equal(await page.locator("#upload-status").textContent(), "Uploaded 1 of 1.",
    await result.first().textContent());
  const newId = await page.locator("#upload-results li.uploaded").getAttribute("data-id");

  // Regenerate the album's thumbnails: the progress bar follows the catalog's job to 100 %.
  await page.selectOption("#regen-album", albumId);
  const progress = page.locator("#regen-progress");
  assert.equal(await progress.isHidden(), true, "no progress before a job");
  const polls = [];
  page.on("response", (r) => r.url().includes("/api/v1/admin/jobs/") && polls.push(r.status()));
  await page.click("#regen");
  await page.waitForFunction(
    () => document.getElementById("regen-progress").dataset.state === "succeeded",
    undefined,
    { timeout: 120_000 },
  );
  assert.equal(await progress.evaluate((p) => p.value), 100, "the bar reaches 100 %");
  const regen = await page.locator("#regen-status").textContent();
  assert.match(regen, new RegExp(`succeeded: ${photos.length + 1} of ${photos.length + 1} photos \\(100 %\\)`), regen);
  assert.ok(polls.length >= 2, `the job was started and polled (${polls.join(", ")})`);
  assert.equal(await page.locator("#regen").isEnabled(), true, "the button is usable again");
  log(`thumbnails regenerated with live progress: ${regen}`);
  await page.locator("#cache-refresh").click();
  await page.locator("#cache-rows tr").first().waitFor();
  await page.locator("#perf-refresh").click();
  await page.locator("#perf-rows tr").first().waitFor();
  await page.screenshot({ path: path.join(artifacts, "admin.png"), fullPage: true });
  log(`uploaded ${newId} through the admin page`);

  await page.goto(`${base}/albums/${albumId}`);
  await page.locator("figure.tile").first().waitFor();
  while (await page.locator("#more").isVisible()) {
    const before = await tiles.count();
    await page.locator("#more").click();
    await page.waitForFunction((n) => document.querySelectorAll("figure.tile").length > n, before);
  }
  const uploaded = page.locator(`figure.tile[data-id="${newId}"]`);
  assert.equal(await uploaded.count(), 1, "the uploaded photo is in the album");
  assert.equal(await uploaded.locator("figcaption").textContent(), "From the admin page");
  await uploaded.scrollIntoViewIfNeeded();
  await page.waitForFunction((id) => {
    const img = document.querySelector(`figure.tile[data-id="${id}"] img`);
    return img.complete && img.naturalWidth > 0;
  }, newId);
  log("the upload appears in the album");

  assert.deepEqual(problems, [], "no script errors or CSP violations");
} finally {
  await browser.close();
}
log(`screenshots in ${artifacts}`);
