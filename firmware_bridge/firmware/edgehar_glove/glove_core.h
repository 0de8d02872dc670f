/* glove_core: the board-independent part of the edgehar glove firmware.
 *
 * The sketch (edgehar_glove.ino) reads the sensors and moves bytes; everything between is
 * here, in portable C99 that also builds on a PC: the glove's descriptor, cutting samples
 * into SAMPLES blocks (numbered, stamped with the first sample's microsecond counter),
 * STATUS, and answering the host's commands. host/glove_sim.c runs this same code on a
 * pseudo-terminal, which is how the tests stream it into `edgehar record`.
 *
 * No heap, no globals: the board owns one glove_core and passes it in. Frames leave
 * through the board's emit(ctx, bytes, n) callback, one whole frame per call.
 */
#ifndef GLOVE_CORE_H
#define GLOVE_CORE_H

#include "edgehar_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GLOVE_CHANNELS 12    /* 5 flex, acc xyz, gyro xyz, thumb pressure: the descriptor's order */
#define GLOVE_RATE_HZ 100
#define GLOVE_PERIOD_US 10000u /* 1e6 / GLOVE_RATE_HZ: the spacing the host assumes inside a block */
#define GLOVE_MAX_BLOCK 20   /* samples per block at most: 12 channels x 20 fit one 512-byte frame */
#define GLOVE_FRACTION_FULL 32767 /* flex and pressure: 0..1 sent as 0..32767 */

/* The glove's channels (names as the simulated glove and the shipped models use them) with
 * the MPU-6050's own scales at +-16 g and +-2000 deg/s, so its registers go out unchanged. */
extern const edgehar_descriptor glove_descriptor;

typedef void (*glove_emit_fn)(void *ctx, const uint8_t *frame, size_t n);

typedef struct {
    edgehar_descriptor descriptor; /* glove_descriptor; a board may set device_id (e.g. its MAC) before glove_boot */
    glove_emit_fn emit;
    void *ctx;
    uint8_t block_samples; /* samples per block: send a block when it holds this many */
    uint8_t n;             /* samples in the block being filled */
    uint16_t seq;          /* the next block's sequence number */
    uint32_t t_first_us;   /* device counter at the block's first sample */
    uint8_t battery_pct;   /* for STATUS: 0..100 or EDGEHAR_BATTERY_UNKNOWN; the board updates it */
    uint8_t flags;         /* for STATUS: EDGEHAR_FLAG_* bits; OVERFLOW is cleared once reported */
    uint32_t blocks;       /* blocks sent */
    int16_t raw[GLOVE_MAX_BLOCK * GLOVE_CHANNELS];
    uint8_t frame[EDGEHAR_FRAME_BUF];
} glove_core;

/* block_samples: 1..GLOVE_MAX_BLOCK (clamped); seq0: any start (a device starts anywhere). */
void glove_init(glove_core *g, glove_emit_fn emit, void *ctx, uint8_t block_samples, uint16_t seq0);

/* After power-up or a new serial connection: one 0x00 (the host drops what preceded it), then the descriptor. */
void glove_boot(glove_core *g);
void glove_send_descriptor(glove_core *g);
void glove_send_status(glove_core *g);

/* A host command (what edgehar_rx_byte returned): answers SEND_DESCRIPTOR and SEND_STATUS, ignores the rest. */
void glove_command(glove_core *g, uint8_t command);

/* One sample of GLOVE_CHANNELS raw values taken at device time t_us. A block's samples must
 * be GLOVE_PERIOD_US apart; a sample that is not (the board missed a tick) first sends the
 * block so far, so every block stays evenly spaced, and sets EDGEHAR_FLAG_OVERFLOW. */
void glove_sample(glove_core *g, uint32_t t_us, const int16_t *values);

/* Send the samples held so far as a (short) block, if any. */
void glove_flush(glove_core *g);

/* New block size, e.g. after a BLE MTU change: edgehar_samples_per_block(GLOVE_CHANNELS, mtu - 3). */
void glove_set_block_samples(glove_core *g, uint8_t block_samples);

/* A reading between two calibration points as 0..GLOVE_FRACTION_FULL, clamped (flat/bent
 * flex ADC readings, released/pressed pressure). at_one may be below at_zero. */
int16_t glove_fraction(int32_t reading, int32_t at_zero, int32_t at_one);

#ifdef __cplusplus
}
#endif

#endif /* GLOVE_CORE_H */
