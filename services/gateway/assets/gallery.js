// Gallery: published albums as a grid of cover previews, paged by the API's keyset token.
import { api, el, placeholder, status } from "./common.js";

const PAGE_SIZE = 24;
const grid = document.getElementById("albums");
const more = document.getElementById("more");
let next = "";

function card(album) {
  const cover =
    album.previews.find((p) => p.id === album.cover_photo_id && p.thumbnail) ||
    album.previews.find((p) => p.thumbnail);
  const frame = el("div", { class: "cover" });
  if (cover) {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = "";
    img.width = cover.thumbnail.width;
    img.height = cover.thumbnail.height;
    img.src = cover.thumbnail.url;
    frame.append(img);
    const blur = cover.blur_placeholder.startsWith("data:") ? cover.blur_placeholder : "";
    placeholder(frame, img, cover.dominant_color, blur);
  }
  const count = `${album.photo_count} photo${album.photo_count === 1 ? "" : "s"}`;
  const link = el(
    "a",
    { href: `/albums/${encodeURIComponent(album.id)}` },
    frame,
    el("span", { class: "name" }, album.title),
    el("span", { class: "count" }, count),
  );
  return el("li", { class: "album-card", "data-id": album.id }, link);
}

async function load() {
  more.disabled = true;
  try {
    const query = new URLSearchParams({ page_size: PAGE_SIZE });
    if (next) query.set("page_token", next);
    const page = await api(`/api/v1/albums?${query}`);
    grid.append(...page.albums.map(card));
    next = page.next_page_token;
    more.hidden = !next;
    status("status", grid.children.length ? "" : "No published albums yet.");
  } catch (e) {
    status("status", `Could not load albums: ${e.message}`, true);
  } finally {
    more.disabled = false;
  }
}

more.addEventListener("click", load);
load();
