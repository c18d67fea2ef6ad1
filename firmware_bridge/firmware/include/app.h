/* The board application: message dispatch, configuration, the record ring, firmware-update staging. */
#ifndef FB_APP_H
#define FB_APP_H

#include <stdint.h>
#include "proto.h"

#define FB_FW_VERSION_MAJOR 1
#define FB_FW_VERSION_MINOR 0
#define FB_FW_VERSION_PATCH 0
#define FB_RING_SIZE 24
#define FB_OVERSAMPLE 16
#define FB_MAX_ADDRESSES 8
#define FB_MAX_RECORDS_PER_REPLY 9
#define FB_FW_MAX_IMAGE 28672UL /* 32 KB minus a 4 KB boot section */
#define FB_MIN_INTERVAL_MS 100UL
#define FB_MAX_INTERVAL_MS 86400000UL
#define FB_LOW_EXCITATION (50u * FB_OVERSAMPLE)

typedef struct {
    uint16_t seq;
    uint8_t channel, flags;
    uint32_t ticks;
    uint16_t raw, excitation;
} fb_record_t;

typedef struct {
    fb_decoder_t decoder;
    uint8_t frame[FB_MAX_ENCODED];
    uint32_t interval_ms;
    uint8_t channel_mask;
    uint8_t n_addresses;
    uint8_t addresses[FB_MAX_ADDRESSES];
    fb_record_t ring[FB_RING_SIZE];
    uint8_t ring_head, ring_count;
    uint16_t next_record_seq;
    uint32_t next_sample;
    uint16_t boot_id;
    uint8_t reset_cause;
    uint16_t unknown_type, version_mismatch, records_dropped;
    uint8_t fw_active;
    uint32_t fw_size, fw_next;
    uint16_t fw_crc_expected, fw_crc;
} fb_app_t;

void fb_app_init(fb_app_t *app, uint16_t boot_id, uint8_t reset_cause);
void fb_app_hello(fb_app_t *app);             /* the unsolicited boot announcement */
void fb_app_rx_byte(fb_app_t *app, uint8_t byte); /* feed one byte from the host; replies via hal_uart_putc */
void fb_app_poll(fb_app_t *app);              /* run the sampler when due */

#endif
