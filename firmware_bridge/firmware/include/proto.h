/* firmware-bridge wire protocol v1: COBS framing, CRC-16/CCITT-FALSE, stream decoder.
 * Frame before COBS: version u8 | type u8 | seq u8 | body (0..FB_MAX_BODY) | crc16 LE over the rest.
 * Specification: docs/firmware-bridge-protocol.md. Pure C99, no hardware access (host-testable). */
#ifndef FB_PROTO_H
#define FB_PROTO_H

#include <stdint.h>

#define FB_PROTOCOL_VERSION 1
#define FB_MAX_BODY 120
#define FB_HEADER 3
#define FB_MIN_FRAME (FB_HEADER + 2)
#define FB_MAX_FRAME (FB_HEADER + FB_MAX_BODY + 2)
#define FB_MAX_ENCODED (FB_MAX_FRAME + 2)

enum fb_type {
    FB_IDENTIFY = 0x01, FB_TIME = 0x02, FB_CONFIG_SET = 0x03, FB_CONFIG_GET = 0x04, FB_RECORDS = 0x05,
    FB_SDI12 = 0x06, FB_STATUS = 0x07, FB_FW_BEGIN = 0x08, FB_FW_CHUNK = 0x09, FB_FW_COMMIT = 0x0A,
    FB_IDENTIFY_REPLY = 0x81, FB_TIME_REPLY = 0x82, FB_CONFIG_REPLY = 0x84, FB_RECORDS_REPLY = 0x85,
    FB_SDI12_REPLY = 0x86, FB_STATUS_REPLY = 0x87, FB_ACK = 0x90, FB_ERROR = 0x91, FB_HELLO = 0xC0
};

enum fb_error {
    FB_E_UNKNOWN_TYPE = 1, FB_E_BAD_LENGTH = 2, FB_E_BAD_VERSION = 3, FB_E_BAD_ARGUMENT = 4,
    FB_E_FW_SEQUENCE = 5, FB_E_FW_VERIFY = 6, FB_E_FW_SIZE = 7
};

uint16_t fb_crc16(const uint8_t *data, uint16_t len, uint16_t crc);

/* COBS-encode len bytes into out (capacity >= len + len/254 + 1); returns the encoded length (no delimiter). */
uint16_t fb_cobs_encode(const uint8_t *in, uint16_t len, uint8_t *out);
/* Decode; returns the decoded length or -1 if malformed. out may alias nothing; capacity >= len. */
int16_t fb_cobs_decode(const uint8_t *in, uint16_t len, uint8_t *out);

typedef struct {
    uint16_t frames, crc_errors, framing_errors, short_frames, overflows;
} fb_stream_counters_t;

typedef struct {
    uint8_t buf[FB_MAX_ENCODED];
    uint8_t len;
    uint8_t overflowed;
    fb_stream_counters_t counters;
} fb_decoder_t;

void fb_decoder_init(fb_decoder_t *d);
/* Feed one byte. Returns the decoded frame length (>= FB_MIN_FRAME, CRC checked) when a frame completed,
 * with the frame in out (capacity FB_MAX_ENCODED); 0 otherwise. Bad frames are counted and dropped. */
uint8_t fb_decoder_feed(fb_decoder_t *d, uint8_t byte, uint8_t *out);

/* Build a frame payload (header + body + CRC) into out; returns its length. */
uint8_t fb_frame_build(uint8_t type, uint8_t seq, const uint8_t *body, uint8_t body_len, uint8_t *out);

static inline void fb_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void fb_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint16_t fb_get16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
static inline uint32_t fb_get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif
