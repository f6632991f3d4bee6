#!/usr/bin/env python3
"""The peers of the imaging bench: libvips (pyvips, decode once, cascaded) and Pillow (the
original app's approach), producing the same derivative set as photos-imaging.

Usage: peers.py vips|pillow PHOTO [WEBP_METHOD]
Prints one line per derivative, `variant NAME FORMAT WIDTH HEIGHT BYTES`, then
`stats WALL_S CPU_S PEAK_RSS_KB` measured around the work (imports excluded from time, not RSS).
"""
import sys
import time

PRESETS = [  # name, width, height, cover, jpeg quality (as photos-imaging's defaults)
    ("xlarge", 2560, 1440, False, 85),
    ("large", 1920, 1080, False, 85),
    ("medium", 1024, 768, False, 84),
    # Cut from medium, as photos-imaging does: small (640x360 for 16:9) cannot cover 400x400.
    ("thumbnail", 400, 400, True, 80),
    ("small", 640, 480, False, 82),
]
WEBP_Q = 85


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_vips(path, method):
    import pyvips
    out = []
    t0, c0 = time.perf_counter(), time.process_time()
    # One decode with shrink-on-load to the largest size, then every smaller size cut from the
    # previous one in memory.
    src = pyvips.Image.thumbnail(path, 2560, height=1440, size="down").copy_memory()
    full = src
    for name, w, h, cover, q in PRESETS:
        if cover:
            # Materialised once like every other size: the two saves below would otherwise each
            # rerun the lazy crop and resize, charging libvips for work it need not do.
            img = src.thumbnail_image(w, height=h, crop="attention", size="down").copy_memory()
        else:
            img = src.thumbnail_image(w, height=h, size="down").copy_memory()
            src = img
        jpg = img.jpegsave_buffer(Q=q, interlace=True, optimize_coding=True, strip=True)
        webp = img.webpsave_buffer(Q=WEBP_Q, effort=method, strip=True)
        out.append((name, "jpeg", img.width, img.height, len(jpg)))
        out.append((name, "webp", img.width, img.height, len(webp)))
    del full
    return out, time.perf_counter() - t0, time.process_time() - c0


def run_pillow(path, method):
    from PIL import Image, ImageOps
    import io
    out = []
    t0, c0 = time.perf_counter(), time.process_time()
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    src = im
    for name, w, h, cover, q in PRESETS:
        if cover:
            img = ImageOps.fit(src, (w, h), Image.LANCZOS)
        else:
            img = src.copy()
            img.thumbnail((w, h), Image.LANCZOS)
            src = img
        b = io.BytesIO()
        img.save(b, "JPEG", quality=q, progressive=True, optimize=True)
        jlen = b.tell()
        b = io.BytesIO()
        img.save(b, "WEBP", quality=WEBP_Q, method=method)
        out.append((name, "jpeg", img.width, img.height, jlen))
        out.append((name, "webp", img.width, img.height, b.tell()))
    return out, time.perf_counter() - t0, time.process_time() - c0


def main():
    which, path = sys.argv[1], sys.argv[2]
    method = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    run = run_vips if which == "vips" else run_pillow
    out, wall, cpu = run(path, method)
    for name, fmt, w, h, n in out:
        print(f"variant {name} {fmt} {w} {h} {n}")
    print(f"stats {wall:.4f} {cpu:.4f} {peak_rss_kb()}")


if __name__ == "__main__":
    main()
