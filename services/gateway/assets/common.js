// Shared by the pages: the caller's token, JSON calls to the v1 API, and responsive pictures.

const TOKEN_KEY = "photos.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Calls the API with the session's token; resolves to the JSON body, rejects with the problem
// document's detail so pages can show the gateway's own message.
export async function api(path, { method = "GET", json, body } = {}) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = t.startsWith("Bearer ") ? t : `Bearer ${t}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error((data && data.detail) || `${response.status} ${response.statusText}`);
  }
  return data;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c);
  return node;
}

// Shows the dominant colour and the blur placeholder behind `box` until `img` has loaded.
// Set through the CSSOM, so a CSP without 'unsafe-inline' styles allows it.
export function placeholder(box, img, color, blurUri) {
  box.classList.add("placeholder");
  if (color) box.style.backgroundColor = color;
  if (blurUri) box.style.backgroundImage = `url("${blurUri}")`;
  const done = () => {
    box.classList.remove("placeholder");
    box.classList.add("loaded");
    box.style.backgroundImage = "";
  };
  if (img.complete && img.naturalWidth > 0) done();
  else img.addEventListener("load", done, { once: true });
}

const FALLBACK_ORDER = ["jpeg", "png", "webp", "gif"];

// A <picture>: a WebP source first, a JPEG source, and an <img> with the JPEG fallback.
// `loading` is set before any URL so the browser defers the fetch from the start.
export function picture(photo, sizes, alt) {
  const pic = el("picture");
  for (const format of ["webp", "jpeg"]) {
    const srcset = photo.srcset && photo.srcset[format];
    if (srcset) pic.append(el("source", { type: `image/${format}`, srcset, sizes }));
  }
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = alt;
  if (photo.width && photo.height) {
    img.width = photo.width;
    img.height = photo.height;
  }
  const fallback = fallbackSource(photo);
  if (fallback) img.src = fallback.url;
  pic.append(img);
  return { pic, img };
}

// A small same-shape variant (the second narrowest) in the most widely decoded format.
function fallbackSource(photo) {
  const shaped = (photo.sources || []).filter(
    (s) => s.url && photo.srcset && Object.values(photo.srcset).some((set) => set.includes(s.url)),
  );
  for (const format of FALLBACK_ORDER) {
    const of = shaped.filter((s) => s.format === format).sort((a, b) => a.width - b.width);
    if (of.length) return of[Math.min(of.length - 1, 1)];
  }
  return (photo.sources || []).find((s) => s.url);
}

export function status(id, message, isError = false) {
  const node = document.getElementById(id);
  node.textContent = message;
  node.classList.toggle("error", isError);
}
