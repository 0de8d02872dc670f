/* glove_core: see glove_core.h. */
#include "glove_core.h"

#include <string.h>

/* A full block must fit one frame. */
typedef char glove_max_block_fits[
    EDGEHAR_FRAME_SIZE(EDGEHAR_SAMPLES_PAYLOAD(GLOVE_MAX_BLOCK, GLOVE_CHANNELS)) <= EDGEHAR_FRAME_BUF ? 1 : -1];

static const edgehar_channel channels[GLOVE_CHANNELS] = {
    {"flex_thumb", "bend 0..1", 1.0f / GLOVE_FRACTION_FULL},
    {"flex_index", "bend 0..1", 1.0f / GLOVE_FRACTION_FULL},
    {"flex_middle", "bend 0..1", 1.0f / GLOVE_FRACTION_FULL},
    {"flex_ring", "bend 0..1", 1.0f / GLOVE_FRACTION_FULL},
    {"flex_pinky", "bend 0..1", 1.0f / GLOVE_FRACTION_FULL},
    {"acc_x", "g", 1.0f / 2048},      /* MPU-6050 ACCEL_CONFIG AFS_SEL=3: 2048 LSB/g */
    {"acc_y", "g", 1.0f / 2048},
    {"acc_z", "g", 1.0f / 2048},
    {"gyro_x", "deg/s", 1.0f / 16.4f}, /* GYRO_CONFIG FS_SEL=3: 16.4 LSB/(deg/s) */
    {"gyro_y", "deg/s", 1.0f / 16.4f},
    {"gyro_z", "deg/s", 1.0f / 16.4f},
    {"pressure_thumb", "pressure 0..1", 1.0f / GLOVE_FRACTION_FULL},
};

#ifndef GLOVE_FIRMWARE_VERSION
#define GLOVE_FIRMWARE_VERSION "1.0.0"
#endif
const edgehar_descriptor glove_descriptor = {
    "glove", GLOVE_FIRMWARE_VERSION, "", (float)GLOVE_RATE_HZ, GLOVE_CHANNELS, channels,
};

static uint8_t clamp_block(uint8_t n) {
    return n < 1 ? 1 : (n > GLOVE_MAX_BLOCK ? GLOVE_MAX_BLOCK : n);
}

void glove_init(glove_core *g, glove_emit_fn emit, void *ctx, uint8_t block_samples, uint16_t seq0) {
    memset(g, 0, sizeof *g);
    g->descriptor = glove_descriptor;
    g->emit = emit;
    g->ctx = ctx;
    g->block_samples = clamp_block(block_samples);
    g->seq = seq0;
    g->battery_pct = EDGEHAR_BATTERY_UNKNOWN;
}

static void send(glove_core *g, size_t n) {
    if (n > 0)
        g->emit(g->ctx, g->frame, n);
}

void glove_boot(glove_core *g) {
    static const uint8_t delimiter = 0x00;
    g->emit(g->ctx, &delimiter, 1);
    glove_send_descriptor(g);
}

void glove_send_descriptor(glove_core *g) {
    send(g, edgehar_encode_descriptor(&g->descriptor, g->frame, sizeof g->frame));
}

void glove_send_status(glove_core *g) {
    send(g, edgehar_encode_status(g->battery_pct, g->flags, g->frame, sizeof g->frame));
    g->flags &= (uint8_t)~EDGEHAR_FLAG_OVERFLOW; /* reported: it means "since the last status" */
}

void glove_command(glove_core *g, uint8_t command) {
    if (command == EDGEHAR_SEND_DESCRIPTOR)
        glove_send_descriptor(g);
    else if (command == EDGEHAR_SEND_STATUS)
        glove_send_status(g);
}

void glove_flush(glove_core *g) {
    if (g->n == 0)
        return;
    send(g, edgehar_encode_samples(g->seq, g->t_first_us, g->raw, g->n, GLOVE_CHANNELS, g->frame, sizeof g->frame));
    g->seq++; /* wraps 65535 -> 0, as the protocol says */
    g->blocks++;
    g->n = 0;
}

void glove_sample(glove_core *g, uint32_t t_us, const int16_t *values) {
    /* unsigned arithmetic: the counter may wrap inside a block */
    if (g->n > 0 && t_us - g->t_first_us != (uint32_t)g->n * GLOVE_PERIOD_US) {
        glove_flush(g);
        g->flags |= EDGEHAR_FLAG_OVERFLOW;
    }
    if (g->n == 0)
        g->t_first_us = t_us;
    memcpy(&g->raw[(size_t)g->n * GLOVE_CHANNELS], values, GLOVE_CHANNELS * sizeof *values);
    if (++g->n >= g->block_samples)
        glove_flush(g);
}

void glove_set_block_samples(glove_core *g, uint8_t block_samples) {
    g->block_samples = clamp_block(block_samples);
    if (g->n >= g->block_samples)
        glove_flush(g);
}

int16_t glove_fraction(int32_t reading, int32_t at_zero, int32_t at_one) {
    int32_t span = at_one - at_zero, x;
    if (span == 0)
        return 0;
    x = (int32_t)(((int64_t)(reading - at_zero) * GLOVE_FRACTION_FULL) / span);
    return (int16_t)(x < 0 ? 0 : (x > GLOVE_FRACTION_FULL ? GLOVE_FRACTION_FULL : x));
}
