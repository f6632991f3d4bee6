/* Times one lossy WebP encode (q85, method 6 by default) of a raw RGB file through the same
 * calls as src/webp_ffi.rs (ImportRGB to YUV, WebPEncode), so that libwebp builds with different
 * compiler flags, or other libwebp versions, can be compared on identical pixels. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "webp/encode.h"

static int count(const uint8_t* data, size_t n, const WebPPicture* p) {
  (void)data;
  *(size_t*)p->custom_ptr += n;
  return 1;
}

static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s RAW_RGB WIDTH HEIGHT LABEL [REPS] [METHOD]\n", argv[0]);
    return 2;
  }
  int w = atoi(argv[2]), h = atoi(argv[3]);
  int reps = argc > 5 ? atoi(argv[5]) : 1, method = argc > 6 ? atoi(argv[6]) : 6;
  size_t n = (size_t)w * h * 3;
  uint8_t* px = malloc(n);
  FILE* f = fopen(argv[1], "rb");
  if (!f || fread(px, 1, n, f) != n) { fprintf(stderr, "short read: %s\n", argv[1]); return 1; }
  fclose(f);
  double best = 1e9;
  size_t bytes = 0;
  for (int r = 0; r < reps; r++) {
    WebPConfig c;
    WebPPicture p;
    if (!WebPConfigInit(&c) || !WebPPictureInit(&p)) return 1;
    c.quality = 85;
    c.method = method;
    p.width = w;
    p.height = h;
    p.use_argb = 0;
    size_t out = 0;
    p.writer = count;
    p.custom_ptr = &out;
    double t0 = cpu();
    if (!WebPPictureImportRGB(&p, px, w * 3) || !WebPEncode(&c, &p)) return 1;
    double t = cpu() - t0;
    WebPPictureFree(&p);
    if (t < best) best = t;
    bytes = out;
  }
  printf("%s %s %dx%d m%d cpu %.3f s bytes %zu libwebp %06x\n", argv[4], argv[1], w, h, method,
         best, bytes, WebPGetEncoderVersion());
  return 0;
}
