/* edgehar_wire: device side of wire protocol v1. See edgehar_wire.h for the API and
 * docs/wire-protocol.md for the bytes. */
#include "edgehar_wire.h"

#include <float.h>
#include <string.h>

/* The encoders write IEEE-754 binary32 floats bit for bit. */
typedef char edgehar_float_is_binary32[(sizeof(float) == 4 && FLT_MANT_DIG == 24 && FLT_MAX_EXP == 128) ? 1 : -1];
typedef char edgehar_rx_buf_holds_a_command[EDGEHAR_RX_BUF >= 4 ? 1 : -1];

#define CRC_INIT 0xFFFFu
#define INT16_FULL 32767.0

static uint16_t crc_byte(uint16_t crc, uint8_t b) {
    int bit;
    crc ^= (uint16_t)((uint16_t)b << 8);
    for (bit = 0; bit < 8; bit++)
        crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    return crc;
}

uint16_t edgehar_crc16(const uint8_t *p, size_t n) {
    uint16_t crc = CRC_INIT;
    while (n--)
        crc = crc_byte(crc, *p++);
    return crc;
}

/* A frame under construction: payload bytes go in one at a time and come out COBS-encoded
 * with a running CRC, so no message needs a payload buffer besides the frame itself.
 * COBS: a code byte k in 1..254 means "k-1 data bytes, then a zero"; 0xFF means "254 data
 * bytes, no zero". The code's slot is reserved at code_at and filled when its block ends. */
typedef struct {
    uint8_t *out;
    size_t cap;     /* bytes out[] can hold */
    size_t len;     /* bytes written or reserved so far */
    size_t code_at; /* slot of the current block's code byte */
    uint8_t code;   /* 1 + data bytes in the current block */
    uint16_t crc;
    int full; /* out[] ran out of room: the frame is unusable */
} writer;

static void w_begin(writer *w, uint8_t *out, size_t cap) {
    w->out = out;
    w->cap = cap;
    w->code_at = 0;
    w->len = 1;
    w->code = 1;
    w->crc = CRC_INIT;
    w->full = cap < 1;
}

static void w_close_block(writer *w) {
    w->out[w->code_at] = w->code;
    w->code_at = w->len++;
    w->code = 1;
    if (w->code_at >= w->cap)
        w->full = 1;
}

static void w_put(writer *w, uint8_t b) {
    if (w->full)
        return;
    w->crc = crc_byte(w->crc, b);
    if (b == 0) {
        w_close_block(w);
        return;
    }
    if (w->len >= w->cap) {
        w->full = 1;
        return;
    }
    w->out[w->len++] = b;
    if (++w->code == 0xFF)
        w_close_block(w);
}

static void w_bytes(writer *w, const uint8_t *p, size_t n) {
    while (n--)
        w_put(w, *p++);
}

static void w_u16le(writer *w, uint16_t v) {
    w_put(w, (uint8_t)(v & 0xFF));
    w_put(w, (uint8_t)(v >> 8));
}

static void w_u32le(writer *w, uint32_t v) {
    w_u16le(w, (uint16_t)(v & 0xFFFF));
    w_u16le(w, (uint16_t)(v >> 16));
}

static void w_f32le(writer *w, float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    w_u32le(w, bits);
}

/* Ends the COBS data (fills the last code byte); returns its length, 0 if it did not fit. */
static size_t w_end_cobs(writer *w) {
    if (w->full)
        return 0;
    w->out[w->code_at] = w->code;
    return w->len;
}

/* Appends the CRC and the 0x00 delimiter; returns the frame's length, 0 if unusable. */
static size_t w_end_frame(writer *w) {
    uint16_t crc = w->crc;
    size_t n;
    w_put(w, (uint8_t)(crc >> 8));
    w_put(w, (uint8_t)(crc & 0xFF));
    n = w_end_cobs(w);
    if (n == 0 || n > EDGEHAR_MAX_FRAME || n >= w->cap)
        return 0;
    w->out[n] = 0x00;
    return n + 1;
}

size_t edgehar_cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
    writer w;
    w_begin(&w, out, EDGEHAR_COBS_MAX(n));
    w_bytes(&w, in, n);
    return w_end_cobs(&w);
}

static void w_header(writer *w, uint8_t *frame, size_t cap, uint8_t type) {
    w_begin(w, frame, cap);
    w_put(w, EDGEHAR_PROTOCOL_VERSION);
    w_put(w, type);
}

size_t edgehar_encode_payload(const uint8_t *payload, size_t n, uint8_t *frame, size_t cap) {
    writer w;
    w_begin(&w, frame, cap);
    w_bytes(&w, payload, n);
    return w_end_frame(&w);
}

/* "pstr": a length byte, then the UTF-8 bytes; 0 if longer than 255 bytes. */
static int w_pstr(writer *w, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n > 255)
        return 0;
    w_put(w, (uint8_t)n);
    w_bytes(w, (const uint8_t *)s, n);
    return 1;
}

/* Finite and > 0, without libm: NaN fails every comparison, +inf fails the upper bound. */
static int positive_finite(float x) {
    return x > 0.0f && x <= FLT_MAX;
}

static int names_repeat(const edgehar_descriptor *d, unsigned i) {
    unsigned j;
    for (j = 0; j < i; j++)
        if (strcmp(d->channels[j].name, d->channels[i].name) == 0)
            return 1;
    return 0;
}

size_t edgehar_encode_descriptor(const edgehar_descriptor *d, uint8_t *frame, size_t cap) {
    writer w;
    unsigned i;
    if (d->n_channels == 0 || !positive_finite(d->rate_hz))
        return 0;
    w_header(&w, frame, cap, EDGEHAR_DESCRIPTOR);
    if (!w_pstr(&w, d->kind) || !w_pstr(&w, d->firmware) || !w_pstr(&w, d->device_id))
        return 0;
    w_f32le(&w, d->rate_hz);
    w_put(&w, d->n_channels);
    for (i = 0; i < d->n_channels; i++) {
        const edgehar_channel *ch = &d->channels[i];
        if (!ch->name || !positive_finite(ch->scale) || names_repeat(d, i))
            return 0;
        if (!w_pstr(&w, ch->name) || !w_pstr(&w, ch->unit))
            return 0;
        w_f32le(&w, ch->scale);
    }
    return w_end_frame(&w);
}

size_t edgehar_encode_samples(uint16_t seq, uint32_t t_device_us, const int16_t *raw, uint8_t n, uint8_t c,
                              uint8_t *frame, size_t cap) {
    writer w;
    size_t i, count = (size_t)n * c;
    if (n == 0 || c == 0)
        return 0;
    w_header(&w, frame, cap, EDGEHAR_SAMPLES);
    w_u16le(&w, seq);
    w_u32le(&w, t_device_us);
    w_put(&w, n);
    w_put(&w, c);
    for (i = 0; i < count; i++)
        w_u16le(&w, (uint16_t)raw[i]); /* two's complement, low byte first */
    return w_end_frame(&w);
}

size_t edgehar_encode_status(uint8_t battery_pct, uint8_t flags, uint8_t *frame, size_t cap) {
    writer w;
    if (battery_pct > 100 && battery_pct != EDGEHAR_BATTERY_UNKNOWN)
        return 0;
    w_header(&w, frame, cap, EDGEHAR_STATUS);
    w_put(&w, battery_pct);
    w_put(&w, flags);
    return w_end_frame(&w);
}

uint8_t edgehar_samples_per_block(uint8_t c, size_t limit) {
    unsigned n, best = 0;
    if (limit > EDGEHAR_FRAME_BUF)
        limit = EDGEHAR_FRAME_BUF;
    for (n = 1; n <= 255 && c > 0; n++) {
        if ((size_t)EDGEHAR_FRAME_SIZE(EDGEHAR_SAMPLES_PAYLOAD(n, (size_t)c)) > limit)
            break;
        best = n;
    }
    return (uint8_t)best;
}

/* The next float above a positive finite x (nextafterf without libm). */
static float float_up(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits++;
    memcpy(&x, &bits, sizeof bits);
    return x;
}

float edgehar_scale_for_range(double lo, double hi) {
    double a = lo < 0 ? -lo : lo, b = hi < 0 ? -hi : hi;
    double peak = a > b ? a : b;
    float scale;
    if (!(lo < hi) || !(peak > 0) || !(peak / INT16_FULL < FLT_MAX))
        return 0.0f; /* NaN, empty or zero range, or a scale past the largest float */
    scale = (float)(peak / INT16_FULL);
    while (peak / (double)scale > INT16_FULL) /* float rounding went down: one ulp up */
        scale = float_up(scale);
    return positive_finite(scale) ? scale : 0.0f;
}

void edgehar_rx_init(edgehar_rx *rx) {
    memset(rx, 0, sizeof *rx);
}

/* A finished frame (buf holds its decoded bytes): the command it is, or 0. */
static uint8_t rx_finish(edgehar_rx *rx) {
    uint8_t type;
    if (rx->discard || rx->left != 0 || rx->len != 4 || edgehar_crc16(rx->buf, 4) != 0)
        return 0; /* payload||crc run through the CRC gives 0; a command's payload is 2 bytes */
    type = rx->buf[1];
    if (rx->buf[0] != EDGEHAR_PROTOCOL_VERSION || (type != EDGEHAR_SEND_DESCRIPTOR && type != EDGEHAR_SEND_STATUS))
        return 0;
    return type;
}

static void rx_keep(edgehar_rx *rx, uint8_t b) {
    if (rx->len < EDGEHAR_RX_BUF)
        rx->buf[rx->len++] = b;
    else
        rx->discard = 1; /* longer than any command */
}

uint8_t edgehar_rx_byte(edgehar_rx *rx, uint8_t b) {
    uint8_t got = 0;
    if (b == 0x00) { /* a delimiter ends the frame in progress, good or bad */
        if (rx->code != 0) {
            got = rx_finish(rx);
            if (got)
                rx->commands++;
            else
                rx->rejected++;
        }
        rx->len = 0;
        rx->left = 0;
        rx->code = 0;
        rx->discard = 0;
        return got;
    }
    if (rx->discard)
        return 0;
    if (rx->left > 0) { /* a data byte of the current block */
        rx_keep(rx, b);
        rx->left--;
        return 0;
    }
    /* a code byte: the block before it ended in a zero unless it was a full 0xFF block */
    if (rx->code != 0 && rx->code != 0xFF)
        rx_keep(rx, 0x00);
    rx->code = b;
    rx->left = (uint8_t)(b - 1);
    return 0;
}
