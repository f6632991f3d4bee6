// Admin page: token, albums (batch publish/unpublish), upload, thumbnail regeneration with live
// progress (a catalog job, polled), cache stats, performance report.
import { api, el, setToken, status, token } from "./common.js";

const albums = new Map();
const rows = document.getElementById("album-rows");
const target = document.getElementById("upload-album");
const regenAlbum = document.getElementById("regen-album");

function renderAlbums() {
  const selected = new Set(checked());
  const current = target.value;
  const regenCurrent = regenAlbum.value;
  rows.replaceChildren();
  target.replaceChildren();
  regenAlbum.replaceChildren(el("option", { value: "" }, "All albums"));
  for (const a of albums.values()) {
    const box = el("input", { type: "checkbox", value: a.id, "aria-label": `select ${a.title}` });
    box.checked = selected.has(a.id);
    rows.append(
      el(
        "tr",
        { "data-id": a.id },
        el("td", {}, box),
        el("td", {}, el("a", { href: `/albums/${encodeURIComponent(a.id)}` }, a.title)),
        el("td", {}, el("code", {}, a.id)),
        el("td", {}, String(a.photo_count)),
        el("td", {}, a.is_published ? "yes" : "no"),
      ),
    );
    target.append(el("option", { value: a.id }, `${a.title} (${a.id})`));
    regenAlbum.append(el("option", { value: a.id }, `${a.title} (${a.id})`));
  }
  if (albums.has(current)) target.value = current;
  if (albums.has(regenCurrent)) regenAlbum.value = regenCurrent;
}

function checked() {
  return [...rows.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);
}

// Every page of one listing.
async function listAll(query) {
  let next = "";
  do {
    const params = new URLSearchParams({ ...query, page_size: 100 });
    if (next) params.set("page_token", next);
    const page = await api(`/api/v1/albums?${params}`);
    for (const a of page.albums) albums.set(a.id, a);
    next = page.next_page_token;
  } while (next);
}

async function refreshAlbums() {
  try {
    albums.clear();
    await listAll({});
    if (token()) await listAll({ mine: "true" });
    renderAlbums();
    status("albums-status", `${albums.size} album(s).`);
  } catch (e) {
    status("albums-status", `Could not list albums: ${e.message}`, true);
  }
}

async function setPublished(published) {
  const ids = checked();
  if (!ids.length) return status("albums-status", "Select at least one album.", true);
  try {
    const verb = published ? "publish" : "unpublish";
    const r = await api(`/api/v1/admin/albums/${verb}`, {
      method: "POST",
      json: { album_ids: ids },
    });
    const missing = r.not_found_ids.length ? `; not found: ${r.not_found_ids.join(", ")}` : "";
    status("albums-status", `${verb}ed ${r.updated} album(s)${missing}.`);
    for (const id of ids) {
      try {
        const detail = await api(`/api/v1/albums/${encodeURIComponent(id)}`);
        albums.set(id, detail.album);
      } catch {
        albums.delete(id);
      }
    }
    renderAlbums();
  } catch (e) {
    status("albums-status", `Could not change albums: ${e.message}`, true);
  }
}

async function upload(event) {
  event.preventDefault();
  const album = target.value;
  const files = [...document.getElementById("upload-file").files];
  const title = document.getElementById("upload-title").value;
  const results = document.getElementById("upload-results");
  if (!album || !files.length) return status("upload-status", "Choose an album and a file.", true);
  let ok = 0;
  for (const file of files) {
    const form = new FormData();
    if (title) form.append("title", title);
    form.append("file", file, file.name);
    try {
      const photo = await api(`/api/v1/albums/${encodeURIComponent(album)}/photos`, {
        method: "POST",
        body: form,
      });
      ok += 1;
      results.append(
        el("li", { class: "uploaded", "data-id": photo.id }, `${file.name} → ${photo.id} (${photo.status})`),
      );
    } catch (e) {
      results.append(el("li", { class: "error" }, `${file.name}: ${e.message}`));
    }
  }
  status("upload-status", `Uploaded ${ok} of ${files.length}.`, ok !== files.length);
  await refreshAlbums();
}

const POLL_MS = 300;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function showJob(job) {
  const bar = document.getElementById("regen-progress");
  bar.hidden = false;
  bar.value = job.percent;
  bar.dataset.state = job.state;
  const counts = job.total ? `${job.done} of ${job.total} photos` : "listing photos";
  const failed = job.failed ? `, ${job.failed} failed` : "";
  const error = job.error ? `: ${job.error}` : "";
  status("regen-status", `Job ${job.id} ${job.state}: ${counts}${failed} (${job.percent} %)${error}`,
    job.state === "failed" || job.failed > 0);
}

// Starts the catalog's generate-thumbnails job and follows it until it finishes.
async function regenerate(event) {
  event.preventDefault();
  const button = document.getElementById("regen");
  button.disabled = true;
  try {
    const json = {};
    if (regenAlbum.value) json.album_id = regenAlbum.value;
    if (document.getElementById("regen-missing").checked) json.missing_only = true;
    let job = await api("/api/v1/admin/jobs/regenerate-thumbnails", { method: "POST", json });
    showJob(job);
    while (!job.finished) {
      await sleep(POLL_MS);
      job = await api(`/api/v1/admin/jobs/${encodeURIComponent(job.id)}`);
      showJob(job);
    }
  } catch (e) {
    status("regen-status", `Could not regenerate thumbnails: ${e.message}`, true);
  } finally {
    button.disabled = false;
  }
}

function cell(value) {
  return el("td", {}, String(value));
}

const pct = (x) => `${(x * 100).toFixed(1)} %`;
const ms = (x) => x.toFixed(2);

async function cacheStats() {
  try {
    const r = await api("/api/v1/admin/cache-stats");
    document.getElementById("cache-backend").textContent = `Backend: ${r.backend}`;
    document.getElementById("cache-rows").replaceChildren(
      ...r.caches.map((c) =>
        el("tr", {}, cell(c.cache_name), cell(c.hits), cell(c.misses), cell(pct(c.hit_rate)),
          cell(c.keys), cell(`${c.memory_bytes} B`), cell(c.errors)),
      ),
    );
    status("cache-status", "");
  } catch (e) {
    status("cache-status", `Could not read cache stats: ${e.message}`, true);
  }
}

async function performance() {
  try {
    const r = await api("/api/v1/admin/performance");
    document.getElementById("perf-rows").replaceChildren(
      ...r.rpcs.map((x) =>
        el("tr", {}, cell(x.service), cell(x.rpc), cell(x.count), cell(pct(x.error_rate)),
          cell(ms(x.p50_ms)), cell(ms(x.p95_ms)), cell(ms(x.p99_ms)),
          cell(x.mean_db_statements.toFixed(1)), cell(pct(x.cache_hit_rate))),
      ),
    );
    document.getElementById("perf-statements").replaceChildren(
      ...r.slowest_statements.map((s) =>
        el("li", {}, el("code", {}, s.statement), ` ${ms(s.duration_ms)} ms ${s.plan_note}`),
      ),
    );
    document.getElementById("perf-suggestions").replaceChildren(
      ...r.suggestions.map((s) => el("li", {}, s)),
    );
    status("perf-status", "");
  } catch (e) {
    status("perf-status", `Could not read the performance report: ${e.message}`, true);
  }
}

document.getElementById("token").value = token();
status("token-status", token() ? "Using the saved token." : "No token: read-only.");
document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(document.getElementById("token").value.trim());
  status("token-status", token() ? "Token saved for this tab." : "No token: read-only.");
  refreshAlbums();
});
document.getElementById("token-clear").addEventListener("click", () => {
  setToken("");
  document.getElementById("token").value = "";
  status("token-status", "No token: read-only.");
  refreshAlbums();
});
document.getElementById("find-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = document.getElementById("find-id").value.trim();
  try {
    const detail = await api(`/api/v1/albums/${encodeURIComponent(id)}`);
    albums.set(detail.album.id, detail.album);
    renderAlbums();
    status("albums-status", "");
  } catch (e) {
    status("albums-status", `Could not find ${id}: ${e.message}`, true);
  }
});
document.getElementById("publish").addEventListener("click", () => setPublished(true));
document.getElementById("unpublish").addEventListener("click", () => setPublished(false));
document.getElementById("albums-refresh").addEventListener("click", refreshAlbums);
document.getElementById("upload-form").addEventListener("submit", upload);
document.getElementById("regen-form").addEventListener("submit", regenerate);
document.getElementById("cache-refresh").addEventListener("click", cacheStats);
document.getElementById("perf-refresh").addEventListener("click", performance);
refreshAlbums();
