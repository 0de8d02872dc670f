/* Test driver for edgehar_wire (tests/test_firmware_c.py): one request per stdin line,
 * one answer per stdout line, so a single sanitized process answers a whole test run.
 *
 *   crc HEX | cobs HEX                     -> crc as 4 hex digits | COBS bytes as hex
 *   payload CAP HEX                        -> frame as hex, "-" when the encoder returns 0
 *   samples CAP SEQ T N C HEX              -> frame (HEX: N*C int16 little-endian)
 *   status CAP BATTERY FLAGS               -> frame
 *   descriptor CAP KIND FW ID RATE [NAME UNIT SCALE]...  -> frame (strings as xHEX,
 *                                              floats as 8 hex digits of their bits)
 *   spb C LIMIT                            -> edgehar_samples_per_block
 *   scale LO HI                            -> scale bits as 8 hex digits (LO, HI: strtod, hex floats ok)
 *   rx HEX                                 -> "<types returned, in order> | commands rejected"
 *
 * Every frame buffer is malloc'ed with exactly CAP bytes, so AddressSanitizer sees any
 * write past what an encoder was given. Strings are "x" + hex ("x" alone is empty). */
#include "edgehar_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t unhex(const char *h, uint8_t *out) {
    size_t n = 0;
    unsigned v;
    while (h[0] && h[1] && sscanf(h, "%2x", &v) == 1) {
        out[n++] = (uint8_t)v;
        h += 2;
    }
    return n;
}

static void puthex(const uint8_t *p, size_t n) {
    size_t i;
    if (n == 0)
        fputs("-", stdout);
    for (i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('\n');
}

static char *str_arg(const char *tok) { /* "x" + hex -> a fresh NUL-terminated string */
    char *s = calloc(strlen(tok) / 2 + 2, 1);
    unhex(tok + 1, (uint8_t *)s);
    return s;
}

static float bits_float(const char *tok) {
    uint32_t bits = (uint32_t)strtoul(tok, NULL, 16);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint8_t bytes[1 << 16];

static void descriptor(char **tok, int ntok) {
    size_t cap = strtoul(tok[1], NULL, 10);
    uint8_t *frame = malloc(cap ? cap : 1);
    edgehar_channel ch[255];
    edgehar_descriptor d;
    int i, n = (ntok - 6) / 3;
    d.kind = str_arg(tok[2]);
    d.firmware = str_arg(tok[3]);
    d.device_id = str_arg(tok[4]);
    d.rate_hz = bits_float(tok[5]);
    d.n_channels = (uint8_t)n;
    d.channels = ch;
    for (i = 0; i < n && i < 255; i++) {
        ch[i].name = str_arg(tok[6 + 3 * i]);
        ch[i].unit = str_arg(tok[7 + 3 * i]);
        ch[i].scale = bits_float(tok[8 + 3 * i]);
    }
    puthex(frame, edgehar_encode_descriptor(&d, frame, cap));
    for (i = 0; i < n; i++) {
        free((void *)ch[i].name);
        free((void *)ch[i].unit);
    }
    free((void *)d.kind);
    free((void *)d.firmware);
    free((void *)d.device_id);
    free(frame);
}

static void rx(const char *hex) {
    edgehar_rx r;
    size_t i, n = unhex(hex, bytes);
    edgehar_rx_init(&r);
    for (i = 0; i < n; i++) {
        uint8_t got = edgehar_rx_byte(&r, bytes[i]);
        if (got)
            printf("%02x ", got);
    }
    printf("| %lu %lu\n", (unsigned long)r.commands, (unsigned long)r.rejected);
}

int main(void) {
    static char line[1 << 18];
    char *tok[1024];
    while (fgets(line, sizeof line, stdin)) {
        int ntok = 0;
        char *t = strtok(line, " \n");
        while (t && ntok < 1024) {
            tok[ntok++] = t;
            t = strtok(NULL, " \n");
        }
        if (ntok == 0)
            continue;
        if (!strcmp(tok[0], "crc") && ntok == 2) {
            printf("%04x\n", edgehar_crc16(bytes, unhex(tok[1], bytes)));
        } else if (!strcmp(tok[0], "cobs") && ntok == 2) {
            size_t n = unhex(tok[1], bytes);
            uint8_t *out = malloc(EDGEHAR_COBS_MAX(n));
            puthex(out, edgehar_cobs_encode(bytes, n, out));
            free(out);
        } else if (!strcmp(tok[0], "payload") && ntok == 3) {
            size_t cap = strtoul(tok[1], NULL, 10), n = unhex(tok[2], bytes);
            uint8_t *frame = malloc(cap ? cap : 1);
            puthex(frame, edgehar_encode_payload(bytes, n, frame, cap));
            free(frame);
        } else if (!strcmp(tok[0], "samples") && ntok == 7) {
            size_t cap = strtoul(tok[1], NULL, 10), n = unhex(tok[6], bytes);
            uint8_t *frame = malloc(cap ? cap : 1);
            int16_t *raw = malloc(n ? n : 1);
            memcpy(raw, bytes, n); /* the test writes little-endian int16, as this x86 host stores them */
            puthex(frame, edgehar_encode_samples((uint16_t)strtoul(tok[2], NULL, 10), (uint32_t)strtoul(tok[3], NULL, 10),
                                                 raw, (uint8_t)atoi(tok[4]), (uint8_t)atoi(tok[5]), frame, cap));
            free(raw);
            free(frame);
        } else if (!strcmp(tok[0], "status") && ntok == 4) {
            size_t cap = strtoul(tok[1], NULL, 10);
            uint8_t *frame = malloc(cap ? cap : 1);
            puthex(frame, edgehar_encode_status((uint8_t)atoi(tok[2]), (uint8_t)atoi(tok[3]), frame, cap));
            free(frame);
        } else if (!strcmp(tok[0], "descriptor") && ntok >= 6 && (ntok - 6) % 3 == 0) {
            descriptor(tok, ntok);
        } else if (!strcmp(tok[0], "spb") && ntok == 3) {
            printf("%u\n", edgehar_samples_per_block((uint8_t)atoi(tok[1]), strtoul(tok[2], NULL, 10)));
        } else if (!strcmp(tok[0], "scale") && ntok == 3) {
            float s = edgehar_scale_for_range(strtod(tok[1], NULL), strtod(tok[2], NULL));
            uint32_t bits;
            memcpy(&bits, &s, sizeof bits);
            printf("%08lx\n", (unsigned long)bits);
        } else if (!strcmp(tok[0], "rx") && ntok == 2) {
            rx(tok[1]);
        } else {
            printf("? %s\n", tok[0]);
        }
        fflush(stdout);
    }
    return 0;
}
