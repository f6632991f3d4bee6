// Album page: responsive <picture>s (WebP, then JPEG) lazily loaded over their placeholders,
// the first page with the album, later pages through the keyset token.
import { api, el, picture, placeholder, status } from "./common.js";

const PAGE_SIZE = 24;
// One column on phones, two on tablets, then tiles of about 320 px.
const SIZES = "(max-width: 599px) 100vw, (max-width: 959px) 50vw, 320px";
const grid = document.getElementById("photos");
const more = document.getElementById("more");
const id = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
let next = "";

function tile(photo) {
  const { pic, img } = picture(photo, SIZES, photo.title || photo.caption || "");
  const frame = el("div", { class: "frame" }, pic);
  const p = photo.placeholders || {};
  placeholder(frame, img, p.dominant_color, p.blur_data_uri);
  const figure = el("figure", { class: "tile", "data-id": photo.id }, frame);
  if (photo.title || photo.caption) {
    figure.append(el("figcaption", {}, photo.title || photo.caption));
  }
  return figure;
}

function show(photos, token) {
  grid.append(...photos.map(tile));
  next = token;
  more.hidden = !next;
}

async function first() {
  try {
    const detail = await api(
      `/api/v1/albums/${encodeURIComponent(id)}?photo_page_size=${PAGE_SIZE}`,
    );
    document.getElementById("title").textContent = detail.album.title;
    document.getElementById("description").textContent = detail.album.description;
    document.title = `${detail.album.title} · Photos`;
    show(detail.photos, detail.next_photo_page_token);
    if (!detail.photos.length) status("status", "This album has no photos yet.");
  } catch (e) {
    status("status", `Could not load the album: ${e.message}`, true);
  }
}

async function loadMore() {
  more.disabled = true;
  try {
    const query = new URLSearchParams({ page_size: PAGE_SIZE, page_token: next });
    const page = await api(`/api/v1/albums/${encodeURIComponent(id)}/photos?${query}`);
    show(page.photos, page.next_page_token);
  } catch (e) {
    status("status", `Could not load more photos: ${e.message}`, true);
  } finally {
    more.disabled = false;
  }
}

more.addEventListener("click", loadMore);
first();
