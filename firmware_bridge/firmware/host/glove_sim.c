/* glove_sim: the glove firmware (glove_core + edgehar_wire) built for a PC, streaming a
 * synthetic glove on a serial line. It stands in for the board in tests and demos:
 *
 *   glove_sim --pty [options]        make a pseudo-terminal, print "PTY /dev/pts/N", stream
 *                                    on it: `edgehar record --glove serial:///dev/pts/N`
 *   glove_sim --tty PATH [options]   stream on an existing tty (a UART, a pty's slave side);
 *                                    set its speed beforehand (stty); USB CDC and ptys ignore it
 *
 * Options: --seconds S (run time; default until SIGINT/SIGTERM), --block N (samples per
 * block, default what fits one BLE notification), --status-every S (default 10),
 * --seq0 N and --t0-us N (first block number and device counter; defaults wrap both within
 * seconds, so hosts see the wraps), --device-id ID (default GLOVESIM-0001), --dump FILE (CSV of every sample generated: k, seq of
 * its block, t_device_us, the 12 raw values).
 *
 * Sample k is taken at device time t0 + k * 10 ms, paced by CLOCK_MONOTONIC; its values are
 * a fixed function of k (synth), so a run can be checked against the dump. It answers
 * SEND_DESCRIPTOR and SEND_STATUS and logs each command on stderr. A full link (nobody
 * reading) drops whole frames, as a device with a full USB buffer would.
 *
 * Build: cc -std=c99 -O2 -Iedgehar_wire/src -Iedgehar_glove host/glove_sim.c \
 *            edgehar_glove/glove_core.c edgehar_wire/src/edgehar_wire.c -o glove_sim
 * (from firmware_bridge/firmware/).
 */
#define _XOPEN_SOURCE 600 /* posix_openpt, ptsname, clock_nanosleep */

#include "glove_core.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define FINISH_FRAME_MS 50 /* a frame half written when the link filled up gets this long to finish */

typedef struct {
    int fd;
    unsigned long dropped; /* frames the link would not take */
} link_t;

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void die(const char *what) {
    fprintf(stderr, "glove_sim: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Raw mode (what cfmakeraw does): 8 bits, no echo, no line editing, no CR/LF translation. */
static void make_raw(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0)
        die("tcgetattr");
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8;
    if (tcsetattr(fd, TCSANOW, &t) != 0)
        die("tcsetattr");
}

/* A new pty: our side is the master; the slave stays open here too, so the "device" stays
 * plugged in while hosts open and close it. */
static int open_pty(void) {
    int master = posix_openpt(O_RDWR | O_NOCTTY), slave;
    const char *path;
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || !(path = ptsname(master)))
        die("posix_openpt");
    slave = open(path, O_RDWR | O_NOCTTY);
    if (slave < 0)
        die(path);
    make_raw(slave);
    printf("PTY %s\n", path);
    fflush(stdout);
    return master;
}

static int open_tty(const char *path) {
    int fd = open(path, O_RDWR | O_NOCTTY);
    if (fd < 0)
        die(path);
    make_raw(fd);
    return fd;
}

static void emit(void *ctx, const uint8_t *p, size_t n) {
    link_t *l = ctx;
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(l->fd, p + done, n - done);
        if (k > 0) {
            done += (size_t)k;
        } else if (k < 0 && errno == EINTR) {
            continue;
        } else if (k < 0 && errno == EAGAIN && done > 0) { /* finish what is on the wire, briefly */
            struct pollfd pfd = {l->fd, POLLOUT, 0};
            if (poll(&pfd, 1, FINISH_FRAME_MS) <= 0)
                break;
        } else {
            break; /* full (EAGAIN before the first byte) or gone: drop the frame */
        }
    }
    if (done < n)
        l->dropped++;
}

/* Sample k, channel ch: sawtooth waves of different periods over each channel's whole
 * range (flex and pressure 0..32767, inertial -32768..32767), so blocks carry zero bytes,
 * 0xFF runs and the extremes. */
static int16_t synth(uint32_t k, int ch) {
    uint32_t period = 97u + 31u * (uint32_t)ch, phase = (k + 13u * (uint32_t)ch) % period;
    int32_t lo = (ch < 5 || ch == 11) ? 0 : -32768, hi = 32767;
    return (int16_t)(lo + (int32_t)(((int64_t)(hi - lo) * phase) / (period - 1)));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static unsigned long number(const char *opt, const char *s, unsigned long max) {
    char *end;
    unsigned long v = strtoul(s ? s : "", &end, 0);
    if (!s || *end || v > max) {
        fprintf(stderr, "glove_sim: %s needs a number up to %lu, got %s\n", opt, max, s ? s : "nothing");
        exit(2);
    }
    return v;
}

static int usage(FILE *to, int rc) {
    fprintf(to, "usage: glove_sim --pty|--tty PATH [--seconds S] [--block N] [--status-every S] "
                "[--seq0 N] [--t0-us N] [--device-id ID] [--dump FILE]\n");
    return rc;
}

static void answer_host(glove_core *g, edgehar_rx *rx, int fd) {
    uint8_t buf[256];
    ssize_t n = read(fd, buf, sizeof buf), i;
    for (i = 0; i < n; i++) {
        uint8_t cmd = edgehar_rx_byte(rx, buf[i]);
        if (cmd) {
            fprintf(stderr, "glove_sim: host sent %s\n", cmd == EDGEHAR_SEND_DESCRIPTOR ? "SEND_DESCRIPTOR" : "SEND_STATUS");
            glove_command(g, cmd);
        }
    }
}

int main(int argc, char **argv) {
    const char *tty = NULL, *dump_path = NULL, *device_id = "GLOVESIM-0001";
    int use_pty = 0, i, c;
    double seconds = -1, status_every = 10, t_start, next_status;
    unsigned long block = edgehar_samples_per_block(GLOVE_CHANNELS, EDGEHAR_BLE_PAYLOAD);
    uint16_t seq0 = 65530;
    uint32_t t0_us = 0xFFFFFFFFu - 1999999u, k; /* the counter wraps 2 s after the first sample */
    FILE *dump = NULL;
    link_t link = {-1, 0};
    glove_core g;
    edgehar_rx rx;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--pty")) {
            use_pty = 1;
            continue;
        }
        if (!strcmp(a, "--help"))
            return usage(stdout, 0);
        if (!strcmp(a, "--tty"))
            tty = v;
        else if (!strcmp(a, "--dump"))
            dump_path = v;
        else if (!strcmp(a, "--device-id"))
            device_id = v;
        else if (!strcmp(a, "--seconds"))
            seconds = (double)number(a, v, 86400);
        else if (!strcmp(a, "--status-every"))
            status_every = (double)number(a, v, 3600);
        else if (!strcmp(a, "--block"))
            block = number(a, v, GLOVE_MAX_BLOCK);
        else if (!strcmp(a, "--seq0"))
            seq0 = (uint16_t)number(a, v, 65535);
        else if (!strcmp(a, "--t0-us"))
            t0_us = (uint32_t)number(a, v, 0xFFFFFFFFul);
        else
            return usage(stderr, 2);
        if (!v) {
            fprintf(stderr, "glove_sim: %s needs a value\n", a);
            return 2;
        }
        i++;
    }
    if (use_pty == (tty != NULL)) {
        fprintf(stderr, "glove_sim: give exactly one of --pty and --tty PATH\n");
        return 2;
    }
    if (dump_path && !(dump = fopen(dump_path, "w")))
        die(dump_path);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    link.fd = use_pty ? open_pty() : open_tty(tty);
    if (fcntl(link.fd, F_SETFL, fcntl(link.fd, F_GETFL) | O_NONBLOCK) != 0)
        die("fcntl");

    glove_init(&g, emit, &link, (uint8_t)block, seq0);
    edgehar_rx_init(&rx);
    g.descriptor.device_id = device_id;
    g.battery_pct = 100;
    glove_boot(&g);
    t_start = now_s();
    next_status = 0;
    for (k = 0; !stop && (seconds < 0 || k < (uint32_t)(seconds * GLOVE_RATE_HZ)); k++) {
        double due = t_start + (double)k / GLOVE_RATE_HZ;
        int16_t v[GLOVE_CHANNELS];
        uint32_t t_us = t0_us + k * GLOVE_PERIOD_US; /* wraps, as micros() does */
        for (;;) { /* until sample k is due: answer the host */
            struct pollfd pfd = {link.fd, POLLIN, 0};
            double wait = due - now_s();
            if (wait <= 0 || stop)
                break;
            if (poll(&pfd, 1, (int)(wait * 1000) + 1) > 0 && (pfd.revents & POLLIN))
                answer_host(&g, &rx, link.fd);
        }
        for (c = 0; c < GLOVE_CHANNELS; c++)
            v[c] = synth(k, c);
        if (dump) {
            fprintf(dump, "%lu,%u,%lu", (unsigned long)k, (unsigned)g.seq, (unsigned long)t_us);
            for (c = 0; c < GLOVE_CHANNELS; c++)
                fprintf(dump, ",%d", v[c]);
            fputc('\n', dump);
        }
        glove_sample(&g, t_us, v);
        if ((double)k / GLOVE_RATE_HZ >= next_status) { /* battery falls 1 % a minute, for the host to see */
            g.battery_pct = (uint8_t)(100 - (k / (60u * GLOVE_RATE_HZ)) % 101);
            glove_send_status(&g);
            next_status += status_every;
        }
    }
    glove_flush(&g);
    if (dump)
        fclose(dump);
    fprintf(stderr, "glove_sim: %lu samples in %lu blocks, %lu frames dropped (link full)\n", (unsigned long)k,
            (unsigned long)g.blocks, link.dropped);
    return 0;
}
