/* COBS framing, CRC-16/CCITT-FALSE and the resynchronising stream decoder (see proto.h). */
#include "proto.h"

uint16_t fb_crc16(const uint8_t *data, uint16_t len, uint16_t crc)
{
    while (len--) {
        crc ^= (uint16_t)(*data++) << 8;
        for (uint8_t i = 0; i < 8; i++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t fb_cobs_encode(const uint8_t *in, uint16_t len, uint8_t *out)
{
    uint16_t code_at = 0, o = 1;
    uint8_t code = 1;
    for (uint16_t i = 0; i < len; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
            continue;
        }
        out[o++] = in[i];
        if (++code == 0xFF && i + 1u < len) { /* a full block at the very end needs no empty block */
            out[code_at] = code;
            code_at = o++;
            code = 1;
        }
    }
    out[code_at] = code;
    return o;
}

int16_t fb_cobs_decode(const uint8_t *in, uint16_t len, uint8_t *out)
{
    uint16_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i];
        if (code == 0 || (uint16_t)(i + code) > len)
            return -1;
        for (uint16_t j = (uint16_t)(i + 1); j < (uint16_t)(i + code); j++) {
            if (in[j] == 0)
                return -1;
            out[o++] = in[j];
        }
        i = (uint16_t)(i + code);
        if (code != 0xFF && i < len)
            out[o++] = 0;
    }
    return (int16_t)o;
}

void fb_decoder_init(fb_decoder_t *d)
{
    d->len = 0;
    d->overflowed = 0;
    d->counters.frames = d->counters.crc_errors = d->counters.framing_errors = 0;
    d->counters.short_frames = d->counters.overflows = 0;
}

uint8_t fb_decoder_feed(fb_decoder_t *d, uint8_t byte, uint8_t *out)
{
    if (byte != 0) {
        if (d->len >= FB_MAX_ENCODED) {
            if (!d->overflowed) {
                d->counters.overflows++;
                d->overflowed = 1;
            }
            return 0;
        }
        d->buf[d->len++] = byte;
        return 0;
    }
    uint8_t len = d->len, overflowed = d->overflowed;
    d->len = 0;
    d->overflowed = 0;
    if (len == 0 || overflowed)
        return 0;
    int16_t n = fb_cobs_decode(d->buf, len, out);
    if (n < 0) {
        d->counters.framing_errors++;
        return 0;
    }
    if (n < FB_MIN_FRAME) {
        d->counters.short_frames++;
        return 0;
    }
    if (n > FB_MAX_FRAME) { /* cannot happen with FB_MAX_ENCODED input, kept as a guard */
        d->counters.overflows++;
        return 0;
    }
    uint16_t crc = fb_get16(out + n - 2);
    if (fb_crc16(out, (uint16_t)(n - 2), 0xFFFF) != crc) {
        d->counters.crc_errors++;
        return 0;
    }
    d->counters.frames++;
    return (uint8_t)n;
}

uint8_t fb_frame_build(uint8_t type, uint8_t seq, const uint8_t *body, uint8_t body_len, uint8_t *out)
{
    out[0] = FB_PROTOCOL_VERSION;
    out[1] = type;
    out[2] = seq;
    for (uint8_t i = 0; i < body_len; i++)
        out[FB_HEADER + i] = body[i];
    uint8_t n = (uint8_t)(FB_HEADER + body_len);
    fb_put16(out + n, fb_crc16(out, n, 0xFFFF));
    return (uint8_t)(n + 2);
}
