"""C source of the native point rasteriser (compiled and loaded by :mod:`vipe_dagster.render.raster`).

Kept in a Python module so that it ships with the package like any other source file and is part of the
``ego_render`` stage's code version (:mod:`vipe_dagster.provenance` digests the stage's ``.py`` files).
"""

SOURCE = r"""/*
 * Native CPU point rasteriser with the semantics of gpu_kernels/splat.py (the exact reference).
 *
 * Built at first use by vipe_dagster/render/raster.py (cc -O3 -shared) and called through ctypes, which
 * releases the GIL for the duration of every call.
 *
 * One frame:
 *   1. vr_project: world -> camera (3x4 in float32), optional near clip on |p_cam|, projection with the
 *      camera model (pinhole / Kannala-Brandt / Fisheye624: the formulas of gpu_kernels/cameras.py in
 *      float32), optional 90-degree clockwise rotation of the image, and the culling rules of splat():
 *      z > min_depth, theta <= theta_limit, finite, disk centre within (-r, W-1+r) x (-r, H-1+r). Kept
 *      points become records (u, v, z, colour), binned to the 32 x 32 px tiles their candidate window
 *      [floor - R + 1, floor + R] (R = ceil(r)) touches. vr_set_projected takes pixels computed elsewhere
 *      (any camera model of gpu_kernels.cameras) instead.
 *   2. vr_composite: records are scattered to their tiles in point order (stable); each tile is drawn
 *      independently (tiles are shared out to threads, so the output does not depend on the thread count):
 *      for "front_to_back" / "normalized" the tile's records are sorted by camera z (stable LSD radix sort
 *      on the float bit pattern: exact) and drawn in that order, so every pixel sees its fragments nearest
 *      first and keeps the first k, i.e. exactly the k nearest-in-z fragments of splat(). Coverage and
 *      alpha use the same float32 expressions as splat._fragments: a pixel centre (col, row) is covered
 *      when (fv - v + b)^2 + (fu - u + a)^2 < r^2 for a, b in [-R+1, R], alpha = 1 - d2 / r^2, colour =
 *      rgb / 255. "nearest" is a z-buffer in point order (ties: the first point wins, as in splat()).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VR_PINHOLE 0
#define VR_KB 1
#define VR_FISHEYE624 2

#define VR_FRONT_TO_BACK 0
#define VR_NORMALIZED 1
#define VR_NEAREST 2

#define VR_MAX_THREADS 16
#define VR_TILE 32
#define VR_BLOCK 1024
#define VR_MAX_TILES (256 * 256)
#define VR_MAX_SEGS 1024
#define VR_CHUNK 65536

typedef struct {
    float u, v, z;
    uint32_t c; /* r | g << 8 | b << 16 */
} vr_rec;

typedef struct {
    float *state;      /* padded tile planes r, g, b, t (transmittance or weight sum) */
    float *zb;         /* padded tile: depth of the first (nearest) fragment */
    uint8_t *cnt;      /* padded tile: int32 fragments composited (saturates at k) */
    int64_t cap_pix;
    vr_rec *tmp;       /* radix sort buffer */
    int64_t cap_tmp;
    int64_t *count;    /* projection: kept records per tile */
    int64_t cap_count;
} vr_tls;

typedef struct {
    int64_t cap_pts;
    vr_rec *rec;       /* kept points of the last projection, per segment, in point order */
    uint32_t *code;    /* per record: first tile x, y and the extra tiles its window spans in x, y (8 bits each) */
    int nseg;          /* projection chunks, in point order */
    int64_t seg_off[VR_MAX_SEGS], seg_len[VR_MAX_SEGS];
    int64_t m;         /* records kept */
    int rec_height, rec_width;
    float rec_radius;
    int64_t cap_bin;
    vr_rec *bin;       /* records per tile, each tile's run in point order */
    int64_t cap_tiles;
    int64_t *tile_start, *tile_count;
    uint32_t *tile_kmin, *tile_kmax; /* smallest / largest z key of each tile's records */
    vr_tls tls[VR_MAX_THREADS];
} vr_ctx;

vr_ctx *vr_new(void) { return (vr_ctx *)calloc(1, sizeof(vr_ctx)); }

void vr_delete(vr_ctx *c) {
    if (!c) return;
    free(c->rec); free(c->code); free(c->bin); free(c->tile_start); free(c->tile_count);
    free(c->tile_kmin); free(c->tile_kmax);
    for (int t = 0; t < VR_MAX_THREADS; t++) {
        free(c->tls[t].state); free(c->tls[t].zb); free(c->tls[t].cnt); free(c->tls[t].tmp);
        free(c->tls[t].count);
    }
    free(c);
}

static int vr_reserve_points(vr_ctx *c, int64_t n) {
    if (n <= c->cap_pts) return 0;
    free(c->rec); free(c->code);
    int64_t cap = n + n / 8 + 1024;
    c->rec = (vr_rec *)malloc(cap * sizeof(vr_rec));
    c->code = (uint32_t *)malloc(cap * sizeof(uint32_t));
    if (!c->rec || !c->code) {
        free(c->rec); free(c->code);
        c->rec = NULL; c->code = NULL; c->cap_pts = 0;
        return -1;
    }
    c->cap_pts = cap;
    return 0;
}

static int vr_reserve_tiles(vr_ctx *c, int64_t ntiles) {
    if (ntiles + 1 <= c->cap_tiles) return 0;
    free(c->tile_start); free(c->tile_count); free(c->tile_kmin); free(c->tile_kmax);
    c->tile_start = (int64_t *)malloc((ntiles + 1) * sizeof(int64_t));
    c->tile_count = (int64_t *)malloc((ntiles + 1) * sizeof(int64_t));
    c->tile_kmin = (uint32_t *)malloc((ntiles + 1) * sizeof(uint32_t));
    c->tile_kmax = (uint32_t *)malloc((ntiles + 1) * sizeof(uint32_t));
    c->cap_tiles = (c->tile_start && c->tile_count && c->tile_kmin && c->tile_kmax) ? ntiles + 1 : 0;
    return c->cap_tiles ? 0 : -1;
}

static int vr_reserve_bin(vr_ctx *c, int64_t nbin) {
    if (nbin <= c->cap_bin) return 0;
    free(c->bin);
    int64_t cap = nbin + nbin / 8 + 1024;
    c->bin = (vr_rec *)malloc(cap * sizeof(vr_rec));
    c->cap_bin = c->bin ? cap : 0;
    return c->bin ? 0 : -1;
}

static int vr_reserve_count(vr_tls *t, int64_t ntiles) {
    if (ntiles <= t->cap_count) return 0;
    free(t->count);
    t->count = (int64_t *)malloc(ntiles * sizeof(int64_t));
    t->cap_count = t->count ? ntiles : 0;
    return t->count ? 0 : -1;
}

/* atan for x >= 0 (Cephes atanf: range reduction to |x| <= tan(pi/8), degree-4 polynomial in x^2;
 * relative error ~1e-7), written with selects so that the projection loop vectorises. */
static inline float vr_atan_pos(float x) {
    const float t3p8 = 2.414213562373095f, tp8 = 0.4142135623730950f;
    int big = x > t3p8;
    int mid = (x > tp8) & !big;
    float xb = -1.0f / (big ? x : 1.0f);
    float xm = (x - 1.0f) / (x + 1.0f);
    float y0 = big ? 1.5707963267948966f : (mid ? 0.7853981633974483f : 0.0f);
    float xx = big ? xb : (mid ? xm : x);
    float z = xx * xx;
    float p = (((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z - 3.33329491539e-1f)
              * z * xx + xx;
    return y0 + p;
}

/* Everything one projection needs (shared by its threads). */
typedef struct {
    vr_ctx *c;
    const float *xyz, *uv_in, *z_in;
    const uint8_t *rgb, *valid_in;
    float w2c[12];
    int model;
    float fx, fy, cx, cy, k[6], p[2], s[4];
    float theta_limit, min_depth, nc2;
    int rot_h;
    float radius;
    int R, nw, height, width, tiles_x, n_tiles;
    int64_t n, chunk;
    int nchunks, next; /* chunks of points handed out to the threads */
    pthread_mutex_t lock;
} vr_proj;

typedef struct {
    vr_proj *pj;
    int slot;
} vr_proj_arg;

/* Tile of the first candidate and extra tiles spanned by the candidate window clipped to [0, size-1]: the
 * window is [i-R+1, i+R] (i = floor x), trimmed like the drawing does (see vr_window). */
static inline void vr_span(float x, int R, int nw, float rf, int size, uint32_t *t0, uint32_t *span) {
    const float fx = floorf(x);
    const float f = fx - x;
    const int i = (int)fx;
    const int trim = nw < 2 * R;
    const int cut_lo = !(f + (float)(-R + 1) > -rf), cut_hi = !(f + (float)R < rf);
    int lo = i - R + 1 + (trim & cut_lo), hi = i + R - (trim & !cut_lo & cut_hi);
    lo = lo < 0 ? 0 : lo;
    hi = hi > size - 1 ? size - 1 : hi;
    *t0 = (uint32_t)lo / VR_TILE;
    *span = (uint32_t)hi / VR_TILE - *t0;
}

/* Emit the kept points of a block (pixels U, V, depth Z, keep flags ok, tile codes K, colours C) as records at
 * out[*m...] with their codes, and count them per tile. Branch-free except for records spanning tiles. */
static inline void vr_emit(int64_t nb, const float *U, const float *V, const float *Z, const uint8_t *ok,
                           const uint32_t *K, const uint32_t *C, int tiles_x, vr_rec *out, uint32_t *code,
                           int64_t *count, int64_t *m) {
    int64_t mm = *m;
    for (int64_t j = 0; j < nb; j++) {
        const uint32_t cd = K[j];
        const int keep = ok[j];
        vr_rec r;
        r.u = U[j];
        r.v = V[j];
        r.z = Z[j];
        r.c = C[j];
        out[mm] = r;
        code[mm] = cd;
        mm += keep;
        const uint32_t x0 = cd & 255u, y0 = (cd >> 8) & 255u, dx = (cd >> 16) & 255u, dy = cd >> 24;
        if ((dx | dy) == 0) {
            count[y0 * tiles_x + x0] += keep;
        } else if (keep) {
            for (uint32_t ty = y0; ty <= y0 + dy; ty++)
                for (uint32_t tx = x0; tx <= x0 + dx; tx++) count[ty * tiles_x + tx]++;
        }
    }
    *m = mm;
}

/* Tile code of a kept pixel: see vr_span. */
static inline uint32_t vr_code(float u, float v, int R, int nw, float rf, int width, int height) {
    uint32_t x0, dx, y0, dy;
    vr_span(u, R, nw, rf, width, &x0, &dx);
    vr_span(v, R, nw, rf, height, &y0, &dy);
    return x0 | (y0 << 8) | (dx << 16) | (dy << 24);
}

/* Project points [first, end): records go to rec[first...], codes likewise, counts are added to count.
 * Returns the number of records kept. */
static int64_t vr_project_chunk(const vr_proj *pj, int64_t *count, int64_t first, int64_t end) {
    vr_ctx *c = pj->c;
    vr_rec *out = c->rec + first;
    uint32_t *code = c->code + first;
    const float r00 = pj->w2c[0], r01 = pj->w2c[1], r02 = pj->w2c[2], t0 = pj->w2c[3];
    const float r10 = pj->w2c[4], r11 = pj->w2c[5], r12 = pj->w2c[6], t1 = pj->w2c[7];
    const float r20 = pj->w2c[8], r21 = pj->w2c[9], r22 = pj->w2c[10], t2 = pj->w2c[11];
    const float radius = pj->radius;
    const float umin = -radius, umax = (float)(pj->width - 1) + radius;
    const float vmin = -radius, vmax = (float)(pj->height - 1) + radius;
    const float nc2 = pj->nc2, min_depth = pj->min_depth, theta_limit = pj->theta_limit;
    const int rot = pj->rot_h >= 0;
    const float rh1 = (float)(pj->rot_h - 1);
    const float fx = pj->fx, fy = pj->fy, cx = pj->cx, cy = pj->cy;
    const float k0 = pj->k[0], k1 = pj->k[1], k2 = pj->k[2], k3 = pj->k[3], k4 = pj->k[4], k5 = pj->k[5];
    const float p0 = pj->p[0], p1 = pj->p[1], s0 = pj->s[0], s1 = pj->s[1], s2 = pj->s[2], s3 = pj->s[3];
    const float c3 = 1.0f / 3.0f;
    const int R = pj->R, nw = pj->nw, width = pj->width, height = pj->height;
    const uint8_t *rgb = pj->rgb;
    float U[VR_BLOCK], V[VR_BLOCK], Z[VR_BLOCK];
    uint32_t K[VR_BLOCK], C[VR_BLOCK];
    uint8_t ok[VR_BLOCK];
    int64_t m = 0;
    for (int64_t s = first; s < end; s += VR_BLOCK) {
        const int64_t nb = end - s < VR_BLOCK ? end - s : VR_BLOCK;
        if (pj->uv_in) { /* pixels from elsewhere */
            for (int64_t j = 0; j < nb; j++) {
                const float uu = pj->uv_in[2 * (s + j)], vv = pj->uv_in[2 * (s + j) + 1], zz = pj->z_in[s + j];
                const int good = (pj->valid_in ? pj->valid_in[s + j] != 0 : 1) & (zz > 0.0f) & (zz < INFINITY) &
                                 (uu > umin) & (uu < umax) & (vv > vmin) & (vv < vmax);
                U[j] = good ? uu : 0.0f;
                V[j] = good ? vv : 0.0f;
                Z[j] = zz;
                ok[j] = (uint8_t)good;
            }
        } else if (pj->model == VR_PINHOLE) {
            const float *P = pj->xyz + 3 * s;
            for (int64_t j = 0; j < nb; j++) {
                const float X = P[3 * j], Y = P[3 * j + 1], W = P[3 * j + 2];
                const float x = r00 * X + r01 * Y + r02 * W + t0;
                const float y = r10 * X + r11 * Y + r12 * W + t1;
                const float z = r20 * X + r21 * Y + r22 * W + t2;
                const int val = z > min_depth;
                const float iz = 1.0f / (val ? z : 1.0f);
                const float a = x * iz, b = y * iz;
                const float pu = fx * a + cx, pv = fy * b + cy;
                const float ou = rot ? rh1 - pv : pu, ov = rot ? pu : pv;
                const int good = val & ((x * x + y * y + z * z) >= nc2) & (ou > umin) & (ou < umax) & (ov > vmin) &
                                 (ov < vmax);
                U[j] = good ? ou : 0.0f;
                V[j] = good ? ov : 0.0f;
                Z[j] = z;
                ok[j] = (uint8_t)good;
            }
        } else { /* Kannala-Brandt runs the Fisheye624 formula with zero tangential / thin-prism terms */
            const float *P = pj->xyz + 3 * s;
            for (int64_t j = 0; j < nb; j++) {
                const float X = P[3 * j], Y = P[3 * j + 1], W = P[3 * j + 2];
                const float x = r00 * X + r01 * Y + r02 * W + t0;
                const float y = r10 * X + r11 * Y + r12 * W + t1;
                const float z = r20 * X + r21 * Y + r22 * W + t2;
                const int val = z > min_depth;
                const float iz = 1.0f / (val ? z : 1.0f);
                const float a = x * iz, b = y * iz;
                const float r2 = a * a + b * b;
                const float r = sqrtf(r2);
                const int small = r < 1e-3f;
                const float rs = small ? 1.0f : r;
                const float theta = vr_atan_pos(r);
                const float tt = theta * theta;
                float tp = tt, poly = 1.0f;
                poly = poly + k0 * tp; tp = tp * tt;
                poly = poly + k1 * tp; tp = tp * tt;
                poly = poly + k2 * tp; tp = tp * tt;
                poly = poly + k3 * tp; tp = tp * tt;
                poly = poly + k4 * tp; tp = tp * tt;
                poly = poly + k5 * tp;
                const float td = theta * poly;
                const float g = small ? 1.0f + (k0 - c3) * r2 + (0.2f - k0 + k1) * r2 * r2 : td / rs;
                const float xr = g * a, yr = g * b;
                const float rd2 = xr * xr + yr * yr;
                const float rd4 = rd2 * rd2;
                const float xy = xr * yr;
                const float uu = xr + (2.0f * xr * xr + rd2) * p0 + 2.0f * xy * p1 + s0 * rd2 + s1 * rd4;
                const float vv = yr + (2.0f * yr * yr + rd2) * p1 + 2.0f * xy * p0 + s2 * rd2 + s3 * rd4;
                const float pu = fx * uu + cx, pv = fy * vv + cy;
                const float ou = rot ? rh1 - pv : pu, ov = rot ? pu : pv;
                const int good = val & (theta <= theta_limit) & ((x * x + y * y + z * z) >= nc2) & (ou > umin) &
                                 (ou < umax) & (ov > vmin) & (ov < vmax);
                U[j] = good ? ou : 0.0f;
                V[j] = good ? ov : 0.0f;
                Z[j] = z;
                ok[j] = (uint8_t)good;
            }
        }
        const uint8_t *col = rgb + 3 * s;
        for (int64_t j = 0; j < nb; j++) {
            K[j] = vr_code(U[j], V[j], R, nw, radius, width, height);
            C[j] = (uint32_t)col[3 * j] | ((uint32_t)col[3 * j + 1] << 8) | ((uint32_t)col[3 * j + 2] << 16);
        }
        vr_emit(nb, U, V, Z, ok, K, C, pj->tiles_x, out, code, count, &m);
    }
    return m;
}

/* Projection thread: takes chunks of points until none is left. */
static void *vr_project_worker(void *arg) {
    vr_proj_arg *pa = (vr_proj_arg *)arg;
    vr_proj *pj = pa->pj;
    vr_ctx *c = pj->c;
    int64_t *count = c->tls[pa->slot].count;
    memset(count, 0, pj->n_tiles * sizeof(int64_t));
    for (;;) {
        pthread_mutex_lock(&pj->lock);
        const int k = pj->next++;
        pthread_mutex_unlock(&pj->lock);
        if (k >= pj->nchunks) break;
        const int64_t s0 = (int64_t)k * pj->chunk, s1 = s0 + pj->chunk < pj->n ? s0 + pj->chunk : pj->n;
        c->seg_off[k] = s0;
        c->seg_len[k] = vr_project_chunk(pj, count, s0, s1);
    }
    return NULL;
}

/* Run a projection over n points on up to `threads` threads; returns the records kept, -1 when memory is
 * short, -2 for an image over 8192 px or a radius outside (0, 64]. */
static int64_t vr_run_projection(vr_ctx *c, vr_proj *pj, int64_t n, int threads) {
    if (pj->height > 8192 || pj->width > 8192 || pj->height < 1 || pj->width < 1 || !(pj->radius > 0.0f) ||
        pj->radius > 64.0f)
        return -2;
    pj->c = c;
    pj->R = (int)ceilf(pj->radius);
    {
        const int nw = (int)ceilf(2.0f * pj->radius);
        pj->nw = nw < 2 * pj->R ? nw : 2 * pj->R;
    }
    pj->tiles_x = (pj->width + VR_TILE - 1) / VR_TILE;
    pj->n_tiles = pj->tiles_x * ((pj->height + VR_TILE - 1) / VR_TILE);
    c->m = 0;
    c->nseg = 0;
    if (vr_reserve_points(c, n) != 0 || vr_reserve_tiles(c, pj->n_tiles) != 0) return -1;
    if (threads < 1) threads = 1;
    if (threads > VR_MAX_THREADS) threads = VR_MAX_THREADS;
    pj->n = n;
    pj->chunk = (n + VR_MAX_SEGS - 1) / VR_MAX_SEGS > VR_CHUNK ? (n + VR_MAX_SEGS - 1) / VR_MAX_SEGS : VR_CHUNK;
    pj->nchunks = (int)((n + pj->chunk - 1) / pj->chunk);
    pj->next = 0;
    if (threads > pj->nchunks) threads = pj->nchunks > 0 ? pj->nchunks : 1;
    for (int t = 0; t < threads; t++)
        if (vr_reserve_count(&c->tls[t], pj->n_tiles) != 0) return -1;
    vr_proj_arg args[VR_MAX_THREADS];
    pthread_t tid[VR_MAX_THREADS];
    int started[VR_MAX_THREADS];
    pthread_mutex_init(&pj->lock, NULL);
    for (int t = 0; t < threads; t++) {
        args[t].pj = pj;
        args[t].slot = t;
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tid[t], NULL, vr_project_worker, &args[t]) == 0;
    vr_project_worker(&args[0]);
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&pj->lock);
    memset(c->tile_count, 0, pj->n_tiles * sizeof(int64_t));
    int64_t m = 0;
    for (int t = 0; t < threads; t++) {
        if (t > 0 && !started[t]) { /* could not start: its slot counted nothing */
            continue;
        }
        const int64_t *cnt = c->tls[t].count;
        for (int i = 0; i < pj->n_tiles; i++) c->tile_count[i] += cnt[i];
    }
    for (int k = 0; k < pj->nchunks; k++) m += c->seg_len[k];
    c->nseg = pj->nchunks;
    c->m = m;
    c->rec_height = pj->height;
    c->rec_width = pj->width;
    c->rec_radius = pj->radius;
    return m;
}

/*
 * Project n world points (xyz n x 3 float32, colours rgb n x 3 uint8). w2c: 12 floats (row-major 3x4).
 * params: camera parameters (float32) in the order of gpu_kernels.cameras. rot_h >= 0 rotates the image 90
 * degrees clockwise: (col, row) = (rot_h - 1 - v, u). near_clip > 0 drops points with |p_cam| < near_clip.
 * Returns the number of points kept (see vr_run_projection for errors).
 */
int64_t vr_project(vr_ctx *c, int64_t n, const float *xyz, const uint8_t *rgb, const float *w2c, int model,
                   const float *params, float theta_limit, float min_depth, float near_clip, int rot_h, float radius,
                   int height, int width, int threads) {
    vr_proj pj;
    memset(&pj, 0, sizeof(pj));
    pj.xyz = xyz;
    pj.rgb = rgb;
    memcpy(pj.w2c, w2c, sizeof(pj.w2c));
    pj.model = model;
    if (model == VR_PINHOLE || model == VR_KB) {
        pj.fx = params[0]; pj.fy = params[1]; pj.cx = params[2]; pj.cy = params[3];
        if (model == VR_KB)
            for (int i = 0; i < 4; i++) pj.k[i] = params[4 + i];
    } else if (model == VR_FISHEYE624) {
        pj.fx = pj.fy = params[0]; pj.cx = params[1]; pj.cy = params[2];
        for (int i = 0; i < 6; i++) pj.k[i] = params[3 + i];
        pj.p[0] = params[9]; pj.p[1] = params[10];
        for (int i = 0; i < 4; i++) pj.s[i] = params[11 + i];
    } else {
        return -2;
    }
    pj.theta_limit = theta_limit;
    pj.min_depth = min_depth;
    pj.nc2 = near_clip > 0 ? near_clip * near_clip : -1.0f;
    pj.rot_h = rot_h;
    pj.radius = radius;
    pj.height = height;
    pj.width = width;
    return vr_run_projection(c, &pj, n, threads);
}

/* Pixels computed elsewhere: uv (n x 2, after any rotation), z (n), valid (n bytes, or NULL), rgb (n x 3). */
int64_t vr_set_projected(vr_ctx *c, int64_t n, const float *uv, const float *z, const uint8_t *valid,
                         const uint8_t *rgb, float radius, int height, int width, int threads) {
    vr_proj pj;
    memset(&pj, 0, sizeof(pj));
    pj.uv_in = uv;
    pj.z_in = z;
    pj.valid_in = valid;
    pj.rgb = rgb;
    pj.radius = radius;
    pj.height = height;
    pj.width = width;
    return vr_run_projection(c, &pj, n, threads);
}

static inline uint32_t vr_zbits(const vr_rec *r) {
    uint32_t b;
    memcpy(&b, &r->z, 4);
    return b;
}

/* Stable LSD radix sort of m records by z, given the smallest and largest key. Positive floats order like
 * their bit patterns; keys are taken relative to the smallest and split into as few digits of at most 12
 * bits as the key range needs (a tile's depths usually span an octave or two: 2 passes). Returns the array
 * holding the result (a or tmp). */
static vr_rec *vr_sort(vr_rec *a, vr_rec *tmp, int64_t m, uint32_t kmin, uint32_t kmax) {
    const uint32_t range = kmax - kmin;
    if (m < 2 || range == 0) return a;
    int bits = 0;
    while (bits < 32 && (range >> bits) != 0) bits++;
    const int passes = (bits + 11) / 12;
    const int width = (bits + passes - 1) / passes;
    const uint32_t nb = 1u << width, mask = nb - 1;
    static __thread uint32_t hist[3][4096];
    memset(hist, 0, sizeof(uint32_t) * 4096 * 3);
    for (int64_t i = 0; i < m; i++) {
        const uint32_t kk = vr_zbits(a + i) - kmin;
        hist[0][kk & mask]++;
        if (passes > 1) hist[1][(kk >> width) & mask]++;
        if (passes > 2) hist[2][(kk >> (2 * width)) & mask]++;
    }
    vr_rec *src = a, *dst = tmp;
    for (int p = 0; p < passes; p++) {
        uint32_t *h = hist[p];
        uint32_t sum = 0;
        for (uint32_t b = 0; b < nb; b++) {
            const uint32_t t = h[b];
            h[b] = sum;
            sum += t;
        }
        const int sh = width * p;
        for (int64_t i = 0; i < m; i++) {
            const uint32_t d = ((vr_zbits(src + i) - kmin) >> sh) & mask;
            dst[h[d]++] = src[i];
        }
        vr_rec *t = src; src = dst; dst = t;
    }
    return src;
}

typedef struct {
    vr_ctx *c;
    int height, width, k, mode, tiles_x, n_tiles, R, pad, nw, sorting, want_depth;
    int64_t max_run;
    float radius;
    const float *bg;
    uint8_t *img_u8;
    float *img_f32, *depth;
    uint8_t *mask;
    int next; /* next tile to draw (shared counter) */
    int failed;
    pthread_mutex_t lock;
} vr_job;

/* Padded tile state, one plane each (structure of arrays): colour sums r, g, b; transmittance
 * (front_to_back) or weight sum (normalized); depth of the first fragment; fragments composited. */
typedef struct {
    float *r, *g, *b, *t, *zb;
    int32_t *cnt;
} vr_planes;

/* Window of candidate offsets along one axis: the reference's [-R+1, R], trimmed to nw = ceil(2r) entries
 * when the dropped end is provably outside the disk (the same float expression as the coverage test). */
static inline void vr_window(float f, int R, int nw, float rf, int *o0, int *w) {
    *o0 = -R + 1;
    *w = 2 * R;
    if (nw < 2 * R) {
        if (!(f + (float)(-R + 1) > -rf)) { *o0 = -R + 2; *w = nw; }
        else if (!(f + (float)R < rf)) { *w = nw; }
    }
}

/* Generic drawing (any radius): every candidate pixel centre of the window is tested like
 * splat._fragments (d2 = (fv - v + b)^2 + (fu - u + a)^2 < r^2, alpha = 1 - d2 / r^2). */
static inline __attribute__((always_inline)) void vr_draw_scalar(const vr_job *jb, const vr_rec *rec, int64_t nrec,
                                                                 int tx0, int ty0, vr_planes P, const float *lut,
                                                                 const int mode, const int want_depth) {
    const int R = jb->R, pad = jb->pad, nw = jb->nw, K = jb->k;
    const int TW = VR_TILE + 2 * pad;
    const float rf = jb->radius;
    const float r2 = (float)((double)rf * (double)rf);
    for (int64_t j = 0; j < nrec; j++) {
        const float u = rec[j].u, v = rec[j].v, zz = rec[j].z;
        const uint32_t cc = rec[j].c;
        const float fu = floorf(u), fv = floorf(v);
        const float f_u = fu - u, f_v = fv - v;
        const int iu = (int)fu, iv = (int)fv;
        const float cr = lut[cc & 255u], cg = lut[(cc >> 8) & 255u], cb = lut[(cc >> 16) & 255u];
        int a0, b0, wa, wb;
        vr_window(f_u, R, nw, rf, &a0, &wa);
        vr_window(f_v, R, nw, rf, &b0, &wb);
        const int colbase = iu - tx0 + pad, rowbase = iv - ty0 + pad;
        for (int bb = 0; bb < wb; bb++) {
            const int b = b0 + bb;
            const float dv = f_v + (float)b;
            const float dv2 = dv * dv;
            const int qrow = (rowbase + b) * TW + colbase;
            for (int aa = 0; aa < wa; aa++) {
                const int a = a0 + aa;
                const float du = f_u + (float)a;
                const float d2 = dv2 + du * du;
                if (!(d2 < r2)) continue;
                const int q = qrow + a;
                const int32_t n = P.cnt[q];
                if (mode == VR_NEAREST) {
                    if (n == 0 || zz < P.zb[q]) {
                        P.r[q] = cr; P.g[q] = cg; P.b[q] = cb; P.zb[q] = zz;
                        P.cnt[q] = 1;
                    }
                    continue;
                }
                if (n >= K) continue;
                float al = 1.0f - d2 / r2;
                al = al < 0.0f ? 0.0f : (al > 1.0f ? 1.0f : al);
                if (mode == VR_FRONT_TO_BACK) {
                    const float T = P.t[q];
                    const float w = al * T;
                    P.r[q] += w * cr; P.g[q] += w * cg; P.b[q] += w * cb;
                    P.t[q] = T * (1.0f - al);
                } else {
                    P.r[q] += al * cr; P.g[q] += al * cg; P.b[q] += al * cb;
                    P.t[q] += al;
                }
                if (want_depth && n == 0) P.zb[q] = zz;
                P.cnt[q] = n + 1;
            }
        }
    }
}

#if defined(__GNUC__)
#define VR_VECTOR 1
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

/* two rows of four pixels: lanes 0-3 from p0, lanes 4-7 from p1 */
static inline v8f vr_ld2(const float *p0, const float *p1) {
    v4f lo, hi;
    memcpy(&lo, p0, 16);
    memcpy(&hi, p1, 16);
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
}
static inline void vr_st2(float *p0, float *p1, v8f x) {
    v4f lo = __builtin_shufflevector(x, x, 0, 1, 2, 3), hi = __builtin_shufflevector(x, x, 4, 5, 6, 7);
    memcpy(p0, &lo, 16);
    memcpy(p1, &hi, 16);
}
static inline v8i vr_ld2i(const int32_t *p0, const int32_t *p1) {
    v4i lo, hi;
    memcpy(&lo, p0, 16);
    memcpy(&hi, p1, 16);
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
}
static inline void vr_st2i(int32_t *p0, int32_t *p1, v8i x) {
    v4i lo = __builtin_shufflevector(x, x, 0, 1, 2, 3), hi = __builtin_shufflevector(x, x, 4, 5, 6, 7);
    memcpy(p0, &lo, 16);
    memcpy(p1, &hi, 16);
}
static inline v8f vr_sel(v8i m, v8f a, v8f b) { /* lanes of m are all ones or zero */
    v8i ai, bi, ri;
    v8f r;
    memcpy(&ai, &a, 32);
    memcpy(&bi, &b, 32);
    ri = (m & ai) | (~m & bi);
    memcpy(&r, &ri, 32);
    return r;
}

#define VR_BATCH 16

/*
 * The same arithmetic for radius <= 2 (a window of at most 4 x 4 candidates), two rows of four columns
 * per vector. The per-record set-up (floor, window) runs vectorised over batches of records. Lanes outside
 * the disk, the window or the rows get alpha 0 and a zero count increment, which leaves the state exactly
 * unchanged (x + 0 * c = x, T * (1 - 0) = T); the padded tile has room for the spare row.
 */
static inline __attribute__((always_inline)) void vr_draw_v8(const vr_job *jb, const vr_rec *rec, int64_t nrec,
                                                             int tx0, int ty0, vr_planes P, const float *lut,
                                                             const int mode, const int want_depth) {
    const int R = jb->R, pad = jb->pad, nw = jb->nw;
    const int TW = VR_TILE + 2 * pad;
    const float rf = jb->radius;
    const float r2 = (float)((double)rf * (double)rf);
    const v8f r2v = {r2, r2, r2, r2, r2, r2, r2, r2};
    const v8f one = {1, 1, 1, 1, 1, 1, 1, 1}, zero = {0, 0, 0, 0, 0, 0, 0, 0};
    const v8i Kv = {jb->k, jb->k, jb->k, jb->k, jb->k, jb->k, jb->k, jb->k};
    const v8i zeroi = {0, 0, 0, 0, 0, 0, 0, 0}, onei = {1, 1, 1, 1, 1, 1, 1, 1};
    const v8f lanef = {0, 1, 2, 3, 0, 1, 2, 3};
    const v8i lanei = {0, 1, 2, 3, 0, 1, 2, 3};
    const v8i half = {0, 0, 0, 0, 1, 1, 1, 1};
    const int trim = nw < 2 * R;
    float bfu[VR_BATCH], bfv[VR_BATCH];
    int biu[VR_BATCH], biv[VR_BATCH], ba0[VR_BATCH], bb0[VR_BATCH], bwa[VR_BATCH], bwb[VR_BATCH];
    for (int64_t j0 = 0; j0 < nrec; j0 += VR_BATCH) {
        const int nb = nrec - j0 < VR_BATCH ? (int)(nrec - j0) : VR_BATCH;
        for (int t = 0; t < nb; t++) {
            const float u = rec[j0 + t].u, v = rec[j0 + t].v;
            const float fu = floorf(u), fv = floorf(v);
            const float f_u = fu - u, f_v = fv - v;
            /* vr_window without branches */
            const int du_lo = !(f_u + (float)(-R + 1) > -rf), du_hi = !(f_u + (float)R < rf);
            const int dv_lo = !(f_v + (float)(-R + 1) > -rf), dv_hi = !(f_v + (float)R < rf);
            bfu[t] = f_u;
            bfv[t] = f_v;
            biu[t] = (int)fu;
            biv[t] = (int)fv;
            ba0[t] = -R + 1 + (trim & du_lo);
            bwa[t] = 2 * R - (trim & (du_lo | du_hi));
            bb0[t] = -R + 1 + (trim & dv_lo);
            bwb[t] = 2 * R - (trim & (dv_lo | dv_hi));
        }
        for (int t = 0; t < nb; t++) {
            const vr_rec *rc = rec + j0 + t;
            const float zz = rc->z;
            const uint32_t cc = rc->c;
            const float cr = lut[cc & 255u], cg = lut[(cc >> 8) & 255u], cb = lut[(cc >> 16) & 255u];
            const float f_u = bfu[t], f_v = bfv[t];
            const int a0 = ba0[t], b0 = bb0[t], wa = bwa[t], wb = bwb[t];
            const float a0f = (float)a0;
            const v8f du = (v8f){f_u, f_u, f_u, f_u, f_u, f_u, f_u, f_u} + (lanef + a0f);
            const v8f du2 = du * du;
            const v8i inwin = lanei < (v8i){wa, wa, wa, wa, wa, wa, wa, wa};
            const v8f zzv = {zz, zz, zz, zz, zz, zz, zz, zz};
            const v8f crv = {cr, cr, cr, cr, cr, cr, cr, cr};
            const v8f cgv = {cg, cg, cg, cg, cg, cg, cg, cg};
            const v8f cbv = {cb, cb, cb, cb, cb, cb, cb, cb};
            const int colbase = biu[t] - tx0 + pad + a0, rowbase = biv[t] - ty0 + pad;
            for (int bb = 0; bb < wb; bb += 2) {
                const int b = b0 + bb;
                const float dv_0 = f_v + (float)b, dv_1 = f_v + (float)(b + 1);
                const float e0 = dv_0 * dv_0, e1 = dv_1 * dv_1;
                const v8f d2 = (v8f){e0, e0, e0, e0, e1, e1, e1, e1} + du2;
                const int rows_left = wb - bb;
                const v8i rowok = half < (v8i){rows_left, rows_left, rows_left, rows_left, rows_left, rows_left,
                                               rows_left, rows_left};
                const v8i cov = (d2 < r2v) & inwin & rowok;
                const int q0 = (rowbase + b) * TW + colbase, q1 = q0 + TW;
                const v8i n = vr_ld2i(P.cnt + q0, P.cnt + q1);
                if (mode == VR_NEAREST) {
                    const v8f zb = vr_ld2(P.zb + q0, P.zb + q1);
                    const v8i upd = cov & ((n == zeroi) | (zzv < zb));
                    vr_st2(P.r + q0, P.r + q1, vr_sel(upd, crv, vr_ld2(P.r + q0, P.r + q1)));
                    vr_st2(P.g + q0, P.g + q1, vr_sel(upd, cgv, vr_ld2(P.g + q0, P.g + q1)));
                    vr_st2(P.b + q0, P.b + q1, vr_sel(upd, cbv, vr_ld2(P.b + q0, P.b + q1)));
                    vr_st2(P.zb + q0, P.zb + q1, vr_sel(upd, zzv, zb));
                    vr_st2i(P.cnt + q0, P.cnt + q1, n | (cov & onei));
                    continue;
                }
                const v8i live = cov & (n < Kv);
                v8f al = one - d2 / r2v;
                al = vr_sel(al < zero, zero, al);
                al = vr_sel(al > one, one, al);
                al = vr_sel(live, al, zero);
                if (mode == VR_FRONT_TO_BACK) {
                    const v8f T = vr_ld2(P.t + q0, P.t + q1);
                    const v8f w = al * T;
                    vr_st2(P.r + q0, P.r + q1, vr_ld2(P.r + q0, P.r + q1) + w * crv);
                    vr_st2(P.g + q0, P.g + q1, vr_ld2(P.g + q0, P.g + q1) + w * cgv);
                    vr_st2(P.b + q0, P.b + q1, vr_ld2(P.b + q0, P.b + q1) + w * cbv);
                    vr_st2(P.t + q0, P.t + q1, T * (one - al));
                } else {
                    vr_st2(P.r + q0, P.r + q1, vr_ld2(P.r + q0, P.r + q1) + al * crv);
                    vr_st2(P.g + q0, P.g + q1, vr_ld2(P.g + q0, P.g + q1) + al * cgv);
                    vr_st2(P.b + q0, P.b + q1, vr_ld2(P.b + q0, P.b + q1) + al * cbv);
                    vr_st2(P.t + q0, P.t + q1, vr_ld2(P.t + q0, P.t + q1) + al);
                }
                if (want_depth)
                    vr_st2(P.zb + q0, P.zb + q1, vr_sel(live & (n == zeroi), zzv, vr_ld2(P.zb + q0, P.zb + q1)));
                vr_st2i(P.cnt + q0, P.cnt + q1, n + (live & onei));
            }
        }
    }
}
#endif

static int vr_tls_reserve(vr_tls *t, int64_t npix, int64_t nrec) {
    if (npix > t->cap_pix) {
        free(t->state); free(t->zb); free(t->cnt);
        t->state = (float *)malloc((npix * 4 + 16) * sizeof(float));
        t->zb = (float *)malloc((npix + 16) * sizeof(float));
        t->cnt = (uint8_t *)malloc((npix + 16) * sizeof(int32_t));
        t->cap_pix = (t->state && t->zb && t->cnt) ? npix : 0;
        if (!t->cap_pix) return -1;
    }
    if (nrec > t->cap_tmp) {
        free(t->tmp);
        t->tmp = (vr_rec *)malloc((nrec + 1) * sizeof(vr_rec));
        t->cap_tmp = t->tmp ? nrec : 0;
        if (!t->tmp) return -1;
    }
    return 0;
}

#define VR_DISPATCH(FN, MODE)                                                         \
    do {                                                                              \
        if (want_depth) FN(jb, rec, nrec, tx0, ty0, P, lut, MODE, 1);                 \
        else FN(jb, rec, nrec, tx0, ty0, P, lut, MODE, 0);                            \
    } while (0)

static void vr_draw_tile(vr_job *jb, vr_tls *tl, int tile, const float *lut) {
    const vr_ctx *c = jb->c;
    const int W = jb->width, H = jb->height, mode = jb->mode, pad = jb->pad;
    const int want_depth = jb->want_depth || mode == VR_NEAREST;
    const int TW = VR_TILE + 2 * pad;
    const int tx0 = (tile % jb->tiles_x) * VR_TILE, ty0 = (tile / jb->tiles_x) * VR_TILE;
    const int tx1 = tx0 + VR_TILE < W ? tx0 + VR_TILE : W, ty1 = ty0 + VR_TILE < H ? ty0 + VR_TILE : H;
    const int npix = TW * TW;
    vr_planes P;
    P.r = tl->state; P.g = tl->state + npix; P.b = tl->state + 2 * npix; P.t = tl->state + 3 * npix;
    P.zb = tl->zb;
    P.cnt = (int32_t *)tl->cnt;
    const float t_init = mode == VR_FRONT_TO_BACK ? 1.0f : 0.0f;
    memset(tl->state, 0, (size_t)npix * 3 * sizeof(float));
    for (int q = 0; q < npix; q++) P.t[q] = t_init;
    memset(P.cnt, 0, (size_t)npix * sizeof(int32_t));
    if (want_depth) memset(P.zb, 0, (size_t)npix * sizeof(float));
    vr_rec *rec = c->bin + c->tile_start[tile];
    const int64_t nrec = c->tile_start[tile + 1] - c->tile_start[tile];
    if (jb->sorting) rec = vr_sort(rec, tl->tmp, nrec, c->tile_kmin[tile], c->tile_kmax[tile]);
#ifdef VR_VECTOR
    if (jb->R <= 2) {
        if (mode == VR_FRONT_TO_BACK) VR_DISPATCH(vr_draw_v8, VR_FRONT_TO_BACK);
        else if (mode == VR_NORMALIZED) VR_DISPATCH(vr_draw_v8, VR_NORMALIZED);
        else VR_DISPATCH(vr_draw_v8, VR_NEAREST);
    } else
#endif
    {
        if (mode == VR_FRONT_TO_BACK) VR_DISPATCH(vr_draw_scalar, VR_FRONT_TO_BACK);
        else if (mode == VR_NORMALIZED) VR_DISPATCH(vr_draw_scalar, VR_NORMALIZED);
        else VR_DISPATCH(vr_draw_scalar, VR_NEAREST);
    }
    const float b0 = jb->bg[0], b1 = jb->bg[1], b2 = jb->bg[2];
    for (int y = ty0; y < ty1; y++) {
        for (int x = tx0; x < tx1; x++) {
            const int q = (y - ty0 + pad) * TW + (x - tx0 + pad);
            const int64_t p = (int64_t)y * W + x;
            const int hit = P.cnt[q] > 0;
            float o0, o1, o2;
            if (!hit) {
                o0 = b0; o1 = b1; o2 = b2;
            } else if (mode == VR_FRONT_TO_BACK) {
                o0 = P.r[q] + P.t[q] * b0; o1 = P.g[q] + P.t[q] * b1; o2 = P.b[q] + P.t[q] * b2;
            } else if (mode == VR_NORMALIZED) {
                if (P.t[q] > 0.0f) {
                    o0 = P.r[q] / P.t[q]; o1 = P.g[q] / P.t[q]; o2 = P.b[q] / P.t[q];
                } else {
                    o0 = b0; o1 = b1; o2 = b2;
                }
            } else {
                o0 = P.r[q]; o1 = P.g[q]; o2 = P.b[q];
            }
            if (jb->img_f32) {
                jb->img_f32[3 * p] = o0; jb->img_f32[3 * p + 1] = o1; jb->img_f32[3 * p + 2] = o2;
            }
            if (jb->img_u8) {
                o0 = o0 < 0.0f ? 0.0f : (o0 > 1.0f ? 1.0f : o0);
                o1 = o1 < 0.0f ? 0.0f : (o1 > 1.0f ? 1.0f : o1);
                o2 = o2 < 0.0f ? 0.0f : (o2 > 1.0f ? 1.0f : o2);
                jb->img_u8[3 * p] = (uint8_t)(o0 * 255.0f);
                jb->img_u8[3 * p + 1] = (uint8_t)(o1 * 255.0f);
                jb->img_u8[3 * p + 2] = (uint8_t)(o2 * 255.0f);
            }
            if (jb->depth) jb->depth[p] = hit ? P.zb[q] : 0.0f;
            if (jb->mask) jb->mask[p] = (uint8_t)hit;
        }
    }
}

typedef struct {
    vr_job *jb;
    int slot;
} vr_worker_arg;

static void *vr_worker(void *arg) {
    vr_worker_arg *wa = (vr_worker_arg *)arg;
    vr_job *jb = wa->jb;
    vr_tls *tl = &jb->c->tls[wa->slot];
    const int TW = VR_TILE + 2 * jb->pad;
    if (vr_tls_reserve(tl, (int64_t)TW * TW, jb->sorting ? jb->max_run : 0) != 0) {
        pthread_mutex_lock(&jb->lock);
        jb->failed = 1;
        pthread_mutex_unlock(&jb->lock);
        return NULL;
    }
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f; /* the reference's rgb / 255 in float32 */
    for (;;) {
        pthread_mutex_lock(&jb->lock);
        int t = jb->failed ? jb->n_tiles : jb->next++;
        pthread_mutex_unlock(&jb->lock);
        if (t >= jb->n_tiles) break;
        vr_draw_tile(jb, tl, t, lut);
    }
    return NULL;
}


/*
 * Composite the records of the last projection into an HxW image (the size and radius given to the
 * projection). bg: 3 floats. Outputs (any may be NULL): img_u8 (HxWx3, trunc(clip(C, 0, 1) * 255)),
 * img_f32 (HxWx3), depth (HxW, 0 where empty), mask (HxW bytes). Returns 0; -1 when memory is short, -2
 * when the size or radius differ from the projection's.
 */
int vr_composite(vr_ctx *c, int height, int width, float radius, int k, int mode, const float *bg, int threads,
                 uint8_t *img_u8, float *img_f32, float *depth, uint8_t *mask) {
    if (height != c->rec_height || width != c->rec_width || radius != c->rec_radius) return -2;
    if (k > 255) k = 255;
    if (k < 1) k = 1;
    const int R = (int)ceilf(radius);
    const int tiles_x = (width + VR_TILE - 1) / VR_TILE, tiles_y = (height + VR_TILE - 1) / VR_TILE;
    const int n_tiles = tiles_x * tiles_y;
    int64_t *start = c->tile_start;
    int64_t max_run = 0;
    start[0] = 0;
    for (int t = 0; t < n_tiles; t++) {
        max_run = c->tile_count[t] > max_run ? c->tile_count[t] : max_run;
        start[t + 1] = start[t] + c->tile_count[t];
    }
    if (vr_reserve_bin(c, start[n_tiles]) != 0) return -1;
    int64_t *fill = (int64_t *)malloc(n_tiles * sizeof(int64_t));
    if (!fill) return -1;
    memcpy(fill, start, n_tiles * sizeof(int64_t));
    vr_rec *bin = c->bin;
    uint32_t *kmin = c->tile_kmin, *kmax = c->tile_kmax;
    for (int t = 0; t < n_tiles; t++) {
        kmin[t] = UINT32_MAX;
        kmax[t] = 0;
    }
    for (int sg = 0; sg < c->nseg; sg++) {
        const vr_rec *rec = c->rec + c->seg_off[sg];
        const uint32_t *code = c->code + c->seg_off[sg];
        for (int64_t j = 0; j < c->seg_len[sg]; j++) {
            const uint32_t cd = code[j];
            const uint32_t x0 = cd & 255u, y0 = (cd >> 8) & 255u, dx = (cd >> 16) & 255u, dy = cd >> 24;
            const uint32_t kk = vr_zbits(rec + j);
            if ((dx | dy) == 0) {
                const int t = y0 * tiles_x + x0;
                bin[fill[t]++] = rec[j];
                kmin[t] = kk < kmin[t] ? kk : kmin[t];
                kmax[t] = kk > kmax[t] ? kk : kmax[t];
                continue;
            }
            for (uint32_t ty = y0; ty <= y0 + dy; ty++)
                for (uint32_t tx = x0; tx <= x0 + dx; tx++) {
                    const int t = ty * tiles_x + tx;
                    bin[fill[t]++] = rec[j];
                    kmin[t] = kk < kmin[t] ? kk : kmin[t];
                    kmax[t] = kk > kmax[t] ? kk : kmax[t];
                }
        }
    }
    free(fill);
    vr_job jb;
    jb.c = c; jb.height = height; jb.width = width; jb.k = k; jb.mode = mode;
    jb.tiles_x = tiles_x; jb.n_tiles = n_tiles; jb.radius = radius; jb.bg = bg;
    jb.R = R; jb.pad = 2 * R; jb.sorting = mode != VR_NEAREST; jb.max_run = max_run;
    jb.want_depth = depth != NULL;
    {
        int nw = (int)ceilf(2.0f * radius);
        jb.nw = nw < 2 * R ? nw : 2 * R;
    }
    jb.img_u8 = img_u8; jb.img_f32 = img_f32; jb.depth = depth; jb.mask = mask;
    jb.next = 0;
    jb.failed = 0;
    pthread_mutex_init(&jb.lock, NULL);
    if (threads < 1) threads = 1;
    if (threads > VR_MAX_THREADS) threads = VR_MAX_THREADS;
    if (threads > n_tiles) threads = n_tiles;
    pthread_t tid[VR_MAX_THREADS];
    int started[VR_MAX_THREADS];
    vr_worker_arg args[VR_MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        args[t].jb = &jb;
        args[t].slot = t;
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tid[t], NULL, vr_worker, &args[t]) == 0;
    vr_worker(&args[0]);
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&jb.lock);
    return jb.failed ? -1 : 0;
}

/* Records kept by the last projection (for tests and statistics). */
int64_t vr_kept(const vr_ctx *c) { return c->m; }

/* Copy (u, v, z) of the kept records, in point order, to out (cap x 3 floats); returns the number copied. */
int64_t vr_get_records(const vr_ctx *c, float *out, int64_t cap) {
    int64_t k = 0;
    for (int sg = 0; sg < c->nseg; sg++) {
        const vr_rec *rec = c->rec + c->seg_off[sg];
        for (int64_t j = 0; j < c->seg_len[sg] && k < cap; j++, k++) {
            out[3 * k] = rec[j].u;
            out[3 * k + 1] = rec[j].v;
            out[3 * k + 2] = rec[j].z;
        }
    }
    return k;
}
"""
