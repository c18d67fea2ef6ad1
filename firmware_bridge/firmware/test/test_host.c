/* Host-gcc unit tests: the firmware's protocol and application code against the shared protocol test vectors
 * (firmware_bridge/vectors/protocol-v1.json, converted to vectors.h). Prints one line per failure and a summary;
 * exits non-zero on any failure. */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "hal_fake.h"
#include "proto.h"

struct crc_vec { const uint8_t *data; uint16_t len; uint16_t crc; };
struct cobs_vec { const uint8_t *decoded; uint16_t dlen; const uint8_t *encoded; uint16_t elen; };
struct frame_vec { uint8_t type, seq; const uint8_t *body; uint16_t blen; const uint8_t *wire; uint16_t wlen; };
struct stream_vec {
    const char *name; const uint8_t *wire; uint16_t wlen; const uint8_t *frames; uint16_t flen; uint8_t nframes;
    fb_stream_counters_t counters;
};
struct step { uint8_t op; uint32_t a, b; const uint8_t *data; uint16_t len; const uint8_t *expect; uint16_t elen; };
struct exchange { const char *name; uint16_t boot_id; uint8_t reset_cause; uint32_t millis;
                  const struct step *steps; uint16_t nsteps; };

#include "vectors.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
static int failures, checks;

static void check(int ok, const char *what, const char *name, int index)
{
    checks++;
    if (!ok) {
        failures++;
        printf("FAIL %s %s #%d\n", what, name, index);
    }
}

static void hex(const char *label, const uint8_t *p, uint16_t n)
{
    printf("  %s:", label);
    for (uint16_t i = 0; i < n; i++)
        printf(" %02x", p[i]);
    printf("\n");
}

int main(void)
{
    static uint8_t buf[1024], out[FB_MAX_ENCODED];
    for (unsigned i = 0; i < N(CRC_VECTORS); i++)
        check(fb_crc16(CRC_VECTORS[i].data, CRC_VECTORS[i].len, 0xFFFF) == CRC_VECTORS[i].crc, "crc16", "", (int)i);
    for (unsigned i = 0; i < N(COBS_VECTORS); i++) {
        const struct cobs_vec *v = &COBS_VECTORS[i];
        uint16_t n = fb_cobs_encode(v->decoded, v->dlen, buf);
        check(n == v->elen && memcmp(buf, v->encoded, n) == 0, "cobs encode", "", (int)i);
        int16_t m = fb_cobs_decode(v->encoded, v->elen, buf);
        check(m == (int16_t)v->dlen && memcmp(buf, v->decoded, v->dlen) == 0, "cobs decode", "", (int)i);
    }
    for (unsigned i = 0; i < N(FRAME_VECTORS); i++) {
        const struct frame_vec *v = &FRAME_VECTORS[i];
        static uint8_t payload[FB_MAX_FRAME];
        uint8_t n = fb_frame_build(v->type, v->seq, v->body, (uint8_t)v->blen, payload);
        uint16_t e = fb_cobs_encode(payload, n, buf);
        buf[e++] = 0;
        check(e == v->wlen && memcmp(buf, v->wire, e) == 0, "frame encode", "", (int)i);
        fb_decoder_t d;
        fb_decoder_init(&d);
        uint8_t got = 0;
        for (uint16_t k = 0; k < v->wlen; k++)
            got = fb_decoder_feed(&d, v->wire[k], out);
        check(got == n && memcmp(out, payload, n) == 0, "frame decode", "", (int)i);
    }
    for (unsigned i = 0; i < N(STREAM_VECTORS); i++) {
        const struct stream_vec *v = &STREAM_VECTORS[i];
        fb_decoder_t d;
        fb_decoder_init(&d);
        const uint8_t *expect = v->frames;
        uint8_t seen = 0;
        int same = 1;
        for (uint16_t k = 0; k < v->wlen; k++) {
            uint8_t n = fb_decoder_feed(&d, v->wire[k], out);
            if (!n)
                continue;
            if (seen >= v->nframes || n != expect[0] || memcmp(out, expect + 1, n) != 0)
                same = 0;
            else
                expect += 1 + n;
            seen++;
        }
        check(same && seen == v->nframes, "stream frames", v->name, (int)i);
        check(memcmp(&d.counters, &v->counters, sizeof d.counters) == 0, "stream counters", v->name, (int)i);
    }
    for (unsigned i = 0; i < N(EXCHANGES); i++) {
        const struct exchange *ex = &EXCHANGES[i];
        static fb_app_t app;
        fake_millis = ex->millis;
        memset(fake_adc, 0, sizeof fake_adc);
        fb_app_init(&app, ex->boot_id, ex->reset_cause);
        for (uint16_t s = 0; s < ex->nsteps; s++) {
            const struct step *st = &ex->steps[s];
            fake_tx_len = 0;
            switch (st->op) {
            case 1: fake_millis = st->a; break;
            case 2: fake_adc[st->a & 7] = (uint16_t)st->b; break;
            case 3: fb_app_poll(&app); break;
            case 4: fb_app_hello(&app); break;
            case 5:
                fake_sdi12_status = (uint8_t)st->a;
                memset(fake_sdi12_reply, 0, sizeof fake_sdi12_reply);
                if (st->len)
                    memcpy(fake_sdi12_reply, st->data, st->len);
                break;
            case 6:
                for (uint16_t k = 0; k < st->len; k++)
                    fb_app_rx_byte(&app, st->data[k]);
                break;
            }
            if (st->op == 4 || st->op == 6) {
                int ok = fake_tx_len == st->elen && (st->elen == 0 || memcmp(fake_tx, st->expect, st->elen) == 0);
                check(ok, "exchange", ex->name, s);
                if (!ok) {
                    hex("expected", st->expect, st->elen);
                    hex("got     ", fake_tx, fake_tx_len);
                }
            }
        }
    }
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
