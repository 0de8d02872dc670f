/* edgehar_wire: the device side of the edgehar wire protocol, version 1.
 *
 * What a glove or IMU sends to edgehar, and the host commands it answers; the spec is
 * docs/wire-protocol.md, the host side edgehar.firmware_bridge.protocol. The same frames
 * go down a serial line (USB CDC, UART) and inside BLE notifications:
 *
 *     frame   = COBS(payload || CRC-16/CCITT-FALSE(payload), big-endian) || 0x00
 *     payload = version (1) || type || body (little-endian)
 *
 * Portable C99 for anything from an ESP32 to a PC: no malloc, no globals beyond const
 * tables, no I/O, no libm; floats must be IEEE-754 binary32 (checked at compile time).
 * Every buffer belongs to the caller and is only touched during the call that is given
 * it: an encoder writes one whole frame into `frame` and returns its length, 0x00
 * delimiter included, or 0 (nothing usable written) when the message is invalid, does
 * not fit `cap` bytes, or would exceed EDGEHAR_MAX_FRAME. Size `frame` with the macros
 * below; EDGEHAR_FRAME_BUF always suffices.
 *
 * Typical device loop (docs/glove-firmware.md has the whole sketch):
 *
 *     uint8_t frame[EDGEHAR_FRAME_BUF];
 *     edgehar_rx rx;  edgehar_rx_init(&rx);
 *     send(&zero, 1);                                     // boot: one 0x00 (uint8_t zero = 0), then
 *     send(frame, edgehar_encode_descriptor(&desc, frame, sizeof frame));   // the descriptor
 *     ... every n samples:
 *     send(frame, edgehar_encode_samples(seq++, t_first_us, raw, n, C, frame, sizeof frame));
 *     ... for every byte b the host sent:
 *     if (edgehar_rx_byte(&rx, b) == EDGEHAR_SEND_DESCRIPTOR) send(frame, edgehar_encode_descriptor(...));
 *
 * Checked byte for byte against the Python encoder and the spec's test vectors by
 * tests/test_firmware_c.py (gcc -std=c99 -Wall -Wextra -Werror, ASan + UBSan).
 */
#ifndef EDGEHAR_WIRE_H
#define EDGEHAR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGEHAR_PROTOCOL_VERSION 1

/* Message types (payload byte 1). */
#define EDGEHAR_DESCRIPTOR 0x01      /* device -> host: what the channels are */
#define EDGEHAR_SAMPLES 0x02         /* device -> host: a block of int16 samples */
#define EDGEHAR_STATUS 0x03          /* device -> host: battery and flags */
#define EDGEHAR_SEND_DESCRIPTOR 0x10 /* host -> device: send your descriptor now */
#define EDGEHAR_SEND_STATUS 0x11     /* host -> device: send a status now */

/* BLE GATT: advertise the service; frames go out as notifications of the data characteristic,
 * host commands come in as writes (with or without response) to the command characteristic. */
#define EDGEHAR_SERVICE_UUID "d6a40001-2f71-4bf1-bae3-01178961b416"
#define EDGEHAR_DATA_CHAR_UUID "d6a40002-2f71-4bf1-bae3-01178961b416"
#define EDGEHAR_COMMAND_CHAR_UUID "d6a40003-2f71-4bf1-bae3-01178961b416"

/* STATUS flags; the other bits are sent as 0. */
#define EDGEHAR_FLAG_CHARGING 0x01
#define EDGEHAR_FLAG_SENSOR_FAULT 0x02 /* a sensor did not answer; its channels read 0 */
#define EDGEHAR_FLAG_OVERFLOW 0x04     /* samples were dropped before they could be sent */
#define EDGEHAR_BATTERY_UNKNOWN 255

/* Sizes. A frame is at most EDGEHAR_MAX_FRAME COBS bytes plus its 0x00. */
#define EDGEHAR_MAX_FRAME 512
#define EDGEHAR_FRAME_BUF (EDGEHAR_MAX_FRAME + 1)
#define EDGEHAR_BLE_PAYLOAD 244 /* one notification at ATT MTU 247 */
#define EDGEHAR_COBS_MAX(n) ((n) + 1 + (n) / 254)               /* worst-case COBS of n bytes */
#define EDGEHAR_FRAME_SIZE(payload) (EDGEHAR_COBS_MAX((payload) + 2) + 1) /* worst case, CRC and 0x00 included */
#define EDGEHAR_SAMPLES_PAYLOAD(n, c) (10 + 2 * (n) * (c))      /* SAMPLES payload of n samples x c channels */
#define EDGEHAR_STATUS_FRAME 8                                   /* a STATUS frame, always */

/* One channel: physical value = int16 raw * scale, in `unit`. Strings are UTF-8, NUL
 * terminated, at most 255 bytes; names unique within the device. */
typedef struct {
    const char *name;  /* e.g. "acc_x" */
    const char *unit;  /* e.g. "g" */
    float scale;       /* physical units per LSB, finite and > 0 */
} edgehar_channel;

typedef struct {
    const char *kind;      /* "glove", "imu", ... */
    const char *firmware;  /* e.g. "1.0.0" */
    const char *device_id; /* serial number or MAC; "" or NULL for none */
    float rate_hz;         /* nominal sample rate, finite and > 0 */
    uint8_t n_channels;    /* 1..255; every SAMPLES block carries exactly this many */
    const edgehar_channel *channels;
} edgehar_descriptor;

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR; "123456789" -> 0x29B1). */
uint16_t edgehar_crc16(const uint8_t *p, size_t n);

/* COBS-encode n bytes of in[] into out[] (room for EDGEHAR_COBS_MAX(n) bytes); returns the
 * length. The result holds no 0x00; no delimiter is appended. */
size_t edgehar_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);

/* Frame any payload (version, type, body): COBS(payload || crc) || 0x00. */
size_t edgehar_encode_payload(const uint8_t *payload, size_t n, uint8_t *frame, size_t cap);

/* DESCRIPTOR; 0 if a string is over 255 bytes, a rate or scale is not finite and > 0,
 * n_channels is 0 or a channel name repeats. The 12-channel glove's is ~280 bytes. */
size_t edgehar_encode_descriptor(const edgehar_descriptor *d, uint8_t *frame, size_t cap);

/* SAMPLES: n (1..255) samples of c (1..255) channels, raw[] row-major (sample 0's c values,
 * then sample 1's, ...); t_device_us is the device's microsecond counter at sample 0, seq
 * +1 per block (wrapping). Needs EDGEHAR_FRAME_SIZE(EDGEHAR_SAMPLES_PAYLOAD(n, c)) bytes. */
size_t edgehar_encode_samples(uint16_t seq, uint32_t t_device_us, const int16_t *raw, uint8_t n, uint8_t c,
                              uint8_t *frame, size_t cap);

/* STATUS: battery 0..100 or EDGEHAR_BATTERY_UNKNOWN, EDGEHAR_FLAG_* bits. */
size_t edgehar_encode_status(uint8_t battery_pct, uint8_t flags, uint8_t *frame, size_t cap);

/* Most samples of c channels per block whose whole frame fits `limit` bytes, whatever the
 * values (worst-case COBS): 9 for c = 12 and 19 for c = 6 at EDGEHAR_BLE_PAYLOAD. 0 if
 * not even one fits. Over BLE use limit = ATT MTU - 3. */
uint8_t edgehar_samples_per_block(uint8_t c, size_t limit);

/* The scale that maps a physical range lo..hi onto +-32767 LSB: max(|lo|, |hi|) / 32767,
 * rounded to a float that keeps the range's ends inside +-32767 (as the host's
 * descriptor_from_channels does). 0 for a range that is not finite, empty or all zero. */
float edgehar_scale_for_range(double lo, double hi);

/* Incremental decoder of what the host sends (SEND_DESCRIPTOR, SEND_STATUS): feed it every
 * byte received, in order, one decoder per link. Frames that are not a valid version-1
 * host command (bad COBS or CRC, other versions or types, a body, longer than
 * EDGEHAR_RX_BUF decoded bytes) are counted and skipped; every 0x00 starts afresh, so a
 * decoder that joins mid-frame locks on the next delimiter. */
#ifndef EDGEHAR_RX_BUF
#define EDGEHAR_RX_BUF 16 /* decoded bytes kept per frame; a command is 4 */
#endif

typedef struct {
    uint8_t buf[EDGEHAR_RX_BUF]; /* decoded bytes of the frame in progress */
    size_t len;                  /* bytes in buf */
    uint8_t left;                /* data bytes left in the current COBS block */
    uint8_t code;                /* the current block's code byte; 0 before the first */
    uint8_t discard;             /* this frame is already bad: skip to the next 0x00 */
    uint32_t commands;           /* host commands decoded */
    uint32_t rejected;           /* non-empty frames that were not a valid host command */
} edgehar_rx;

void edgehar_rx_init(edgehar_rx *rx);

/* EDGEHAR_SEND_DESCRIPTOR or EDGEHAR_SEND_STATUS when byte b completes that command, else 0. */
uint8_t edgehar_rx_byte(edgehar_rx *rx, uint8_t b);

#ifdef __cplusplus
}
#endif

#endif /* EDGEHAR_WIRE_H */
