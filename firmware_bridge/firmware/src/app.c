/* Board application: dispatches host requests (docs/firmware-bridge-protocol.md), samples the ratiometric
 * channels on the configured interval into a ring of records the host fetches and acknowledges, relays SDI-12
 * commands, and stages firmware images in verified chunks. Pure C; hardware only through hal.h and sdi12.h. */
#include "app.h"
#include "hal.h"
#include "sdi12.h"

static uint8_t tx_payload[FB_MAX_FRAME];
static uint8_t tx_encoded[FB_MAX_ENCODED];
static uint8_t body[FB_MAX_BODY];

static void send(uint8_t type, uint8_t seq, uint8_t body_len)
{
    uint8_t n = fb_frame_build(type, seq, body, body_len, tx_payload);
    uint16_t e = fb_cobs_encode(tx_payload, n, tx_encoded);
    for (uint16_t i = 0; i < e; i++)
        hal_uart_putc(tx_encoded[i]);
    hal_uart_putc(0);
}

static void send_error(uint8_t seq, uint8_t code, uint8_t request_type, uint32_t argument)
{
    body[0] = code;
    body[1] = request_type;
    fb_put32(body + 2, argument);
    send(FB_ERROR, seq, 6);
}

static void send_ack32(uint8_t seq, uint32_t value)
{
    fb_put32(body, value);
    send(FB_ACK, seq, 4);
}

void fb_app_init(fb_app_t *app, uint16_t boot_id, uint8_t reset_cause)
{
    uint8_t *p = (uint8_t *)app;
    for (uint16_t i = 0; i < sizeof *app; i++)
        p[i] = 0;
    fb_decoder_init(&app->decoder);
    app->interval_ms = 1000;
    app->boot_id = boot_id;
    app->reset_cause = reset_cause;
    app->next_sample = hal_millis();
}

void fb_app_hello(fb_app_t *app)
{
    fb_put16(body, app->boot_id);
    body[2] = app->reset_cause;
    body[3] = FB_PROTOCOL_VERSION;
    hal_uart_putc(0); /* flush whatever partial frame the host may hold */
    send(FB_HELLO, 0, 4);
}

static uint8_t config_body(fb_app_t *app)
{
    fb_put32(body, app->interval_ms);
    body[4] = app->channel_mask;
    body[5] = app->n_addresses;
    for (uint8_t i = 0; i < app->n_addresses; i++)
        body[6 + i] = app->addresses[i];
    return (uint8_t)(6 + app->n_addresses);
}

static uint8_t valid_address(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void handle_config_set(fb_app_t *app, uint8_t seq, const uint8_t *in, uint8_t len)
{
    if (len < 6 || len != 6 + in[5]) {
        send_error(seq, FB_E_BAD_LENGTH, FB_CONFIG_SET, 0);
        return;
    }
    uint32_t interval = fb_get32(in);
    uint8_t mask = in[4], count = in[5];
    if (interval < FB_MIN_INTERVAL_MS || interval > FB_MAX_INTERVAL_MS) {
        send_error(seq, FB_E_BAD_ARGUMENT, FB_CONFIG_SET, 0);
        return;
    }
    if (mask & (uint8_t)~((1u << FB_ANALOG_CHANNELS) - 1u)) {
        send_error(seq, FB_E_BAD_ARGUMENT, FB_CONFIG_SET, 1);
        return;
    }
    if (count > FB_MAX_ADDRESSES) {
        send_error(seq, FB_E_BAD_ARGUMENT, FB_CONFIG_SET, 2);
        return;
    }
    for (uint8_t i = 0; i < count; i++) {
        if (!valid_address(in[6 + i])) {
            send_error(seq, FB_E_BAD_ARGUMENT, FB_CONFIG_SET, 2);
            return;
        }
    }
    app->interval_ms = interval;
    app->channel_mask = mask;
    app->n_addresses = count;
    for (uint8_t i = 0; i < count; i++)
        app->addresses[i] = in[6 + i];
    app->next_sample = hal_millis();
    send(FB_ACK, seq, 0);
}

static void handle_records(fb_app_t *app, uint8_t seq, const uint8_t *in)
{
    if (in[0] & 1) {
        uint16_t ack = fb_get16(in + 1);
        while (app->ring_count) {
            fb_record_t *r = &app->ring[app->ring_head];
            if ((uint16_t)(ack - r->seq) >= 0x8000u)
                break;
            app->ring_head = (uint8_t)((app->ring_head + 1) % FB_RING_SIZE);
            app->ring_count--;
        }
    }
    uint8_t n = in[3];
    if (n > FB_MAX_RECORDS_PER_REPLY)
        n = FB_MAX_RECORDS_PER_REPLY;
    if (n > app->ring_count)
        n = app->ring_count;
    fb_put16(body, app->boot_id);
    fb_put16(body + 2, app->records_dropped);
    body[4] = n;
    for (uint8_t i = 0; i < n; i++) {
        const fb_record_t *r = &app->ring[(app->ring_head + i) % FB_RING_SIZE];
        uint8_t *o = body + 5 + 12 * i;
        fb_put16(o, r->seq);
        o[2] = r->channel;
        o[3] = r->flags;
        fb_put32(o + 4, r->ticks);
        fb_put16(o + 8, r->raw);
        fb_put16(o + 10, r->excitation);
    }
    send(FB_RECORDS_REPLY, seq, (uint8_t)(5 + 12 * n));
}

static void handle_sdi12(fb_app_t *app, uint8_t seq, const uint8_t *in, uint8_t len)
{
    if (len < 3 || len > 2 + 32 || in[len - 1] != '!') {
        send_error(seq, FB_E_BAD_LENGTH, FB_SDI12, 0);
        return;
    }
    uint8_t reply_len = 0;
    uint8_t status = sdi12_transact(in + 2, (uint8_t)(len - 2), body + 7, FB_MAX_BODY - 7, &reply_len,
                                    fb_get16(in));
    fb_put16(body, app->boot_id);
    fb_put32(body + 2, hal_millis());
    body[6] = status;
    send(FB_SDI12_REPLY, seq, (uint8_t)(7 + reply_len));
}

static void handle_status(fb_app_t *app, uint8_t seq)
{
    const fb_stream_counters_t *c = &app->decoder.counters;
    fb_put16(body, app->boot_id);
    body[2] = app->reset_cause;
    fb_put16(body + 3, c->frames);
    fb_put16(body + 5, c->crc_errors);
    fb_put16(body + 7, (uint16_t)(c->framing_errors + c->short_frames));
    fb_put16(body + 9, c->overflows);
    fb_put16(body + 11, app->unknown_type);
    fb_put16(body + 13, app->version_mismatch);
    fb_put16(body + 15, app->records_dropped);
    body[17] = app->ring_count;
    send(FB_STATUS_REPLY, seq, 18);
}

static void handle_fw(fb_app_t *app, uint8_t type, uint8_t seq, const uint8_t *in, uint8_t len)
{
    if (type == FB_FW_BEGIN) {
        if (len != 6) {
            send_error(seq, FB_E_BAD_LENGTH, type, 0);
            return;
        }
        uint32_t size = fb_get32(in);
        if (size == 0 || size > FB_FW_MAX_IMAGE) {
            send_error(seq, FB_E_FW_SIZE, type, FB_FW_MAX_IMAGE);
            return;
        }
        app->fw_active = 1;
        app->fw_size = size;
        app->fw_next = 0;
        app->fw_crc_expected = fb_get16(in + 4);
        app->fw_crc = 0xFFFF;
        hal_fw_begin(size);
        send_ack32(seq, 0);
    } else if (type == FB_FW_CHUNK) {
        if (len < 5 || len > 4 + 64) {
            send_error(seq, FB_E_BAD_LENGTH, type, 0);
            return;
        }
        uint32_t offset = fb_get32(in);
        uint8_t n = (uint8_t)(len - 4);
        if (!app->fw_active || offset != app->fw_next) {
            send_error(seq, FB_E_FW_SEQUENCE, type, app->fw_next);
            return;
        }
        if (offset + n > app->fw_size || !hal_fw_store(offset, in + 4, n)) {
            send_error(seq, FB_E_FW_SIZE, type, app->fw_size);
            return;
        }
        app->fw_crc = fb_crc16(in + 4, n, app->fw_crc);
        app->fw_next += n;
        send_ack32(seq, app->fw_next);
    } else { /* FB_FW_COMMIT */
        if (len != 0) {
            send_error(seq, FB_E_BAD_LENGTH, type, 0);
            return;
        }
        if (!app->fw_active || app->fw_next != app->fw_size || app->fw_crc != app->fw_crc_expected) {
            app->fw_active = 0;
            send_error(seq, FB_E_FW_VERIFY, type, app->fw_crc);
            return;
        }
        app->fw_active = 0;
        send_ack32(seq, app->fw_size);
    }
}

static void dispatch(fb_app_t *app, const uint8_t *frame, uint8_t n)
{
    uint8_t type = frame[1], seq = frame[2];
    const uint8_t *in = frame + FB_HEADER;
    uint8_t len = (uint8_t)(n - FB_HEADER - 2);
    if (frame[0] != FB_PROTOCOL_VERSION) {
        app->version_mismatch++;
        send_error(seq, FB_E_BAD_VERSION, type, FB_PROTOCOL_VERSION);
        return;
    }
    switch (type) {
    case FB_IDENTIFY:
        if (len != 0)
            break;
        hal_board_id(body);
        body[8] = FB_FW_VERSION_MAJOR;
        body[9] = FB_FW_VERSION_MINOR;
        body[10] = FB_FW_VERSION_PATCH;
        body[11] = FB_PROTOCOL_VERSION;
        fb_put16(body + 12, app->boot_id);
        body[14] = FB_ANALOG_CHANNELS + 1;
        for (uint8_t i = 0; i < FB_ANALOG_CHANNELS; i++) {
            body[15 + 2 * i] = i;
            body[16 + 2 * i] = 1; /* analog ratiometric */
        }
        body[15 + 2 * FB_ANALOG_CHANNELS] = 0x10; /* the SDI-12 bus */
        body[16 + 2 * FB_ANALOG_CHANNELS] = 2;
        send(FB_IDENTIFY_REPLY, seq, 15 + 2 * (FB_ANALOG_CHANNELS + 1));
        return;
    case FB_TIME:
        if (len != 0 && len != 4)
            break;
        if (len == 4) {
            hal_set_millis(fb_get32(in));
            app->next_sample = fb_get32(in);
        }
        fb_put16(body, app->boot_id);
        fb_put32(body + 2, hal_millis());
        send(FB_TIME_REPLY, seq, 6);
        return;
    case FB_CONFIG_SET:
        handle_config_set(app, seq, in, len);
        return;
    case FB_CONFIG_GET:
        if (len != 0)
            break;
        send(FB_CONFIG_REPLY, seq, config_body(app));
        return;
    case FB_RECORDS:
        if (len != 4)
            break;
        handle_records(app, seq, in);
        return;
    case FB_SDI12:
        handle_sdi12(app, seq, in, len);
        return;
    case FB_STATUS:
        if (len != 0)
            break;
        handle_status(app, seq);
        return;
    case FB_FW_BEGIN:
    case FB_FW_CHUNK:
    case FB_FW_COMMIT:
        handle_fw(app, type, seq, in, len);
        return;
    default:
        app->unknown_type++;
        send_error(seq, FB_E_UNKNOWN_TYPE, type, 0);
        return;
    }
    send_error(seq, FB_E_BAD_LENGTH, type, 0);
}

void fb_app_rx_byte(fb_app_t *app, uint8_t byte)
{
    uint8_t n = fb_decoder_feed(&app->decoder, byte, app->frame);
    if (n)
        dispatch(app, app->frame, n);
}

static void push_record(fb_app_t *app, uint8_t channel, uint32_t ticks, uint16_t raw, uint16_t excitation)
{
    if (app->ring_count == FB_RING_SIZE) { /* full: the oldest unacknowledged record is lost, and counted */
        app->ring_head = (uint8_t)((app->ring_head + 1) % FB_RING_SIZE);
        app->ring_count--;
        app->records_dropped++;
    }
    fb_record_t *r = &app->ring[(app->ring_head + app->ring_count) % FB_RING_SIZE];
    r->seq = app->next_record_seq++;
    r->channel = channel;
    r->ticks = ticks;
    r->raw = raw;
    r->excitation = excitation;
    r->flags = 0;
    if (raw >= 1023u * FB_OVERSAMPLE)
        r->flags |= 0x01;
    if (excitation < FB_LOW_EXCITATION)
        r->flags |= 0x02;
    app->ring_count++;
}

void fb_app_poll(fb_app_t *app)
{
    if (!app->channel_mask)
        return;
    uint32_t now = hal_millis();
    if ((int32_t)(now - app->next_sample) < 0)
        return;
    app->next_sample += app->interval_ms;
    if ((int32_t)(now - app->next_sample) >= 0) /* fell behind by a whole interval: restart the schedule */
        app->next_sample = now + app->interval_ms;
    for (uint8_t ch = 0; ch < FB_ANALOG_CHANNELS; ch++) {
        if (!(app->channel_mask & (1u << ch)))
            continue;
        uint16_t raw = 0, excitation = 0;
        for (uint8_t i = 0; i < FB_OVERSAMPLE; i++) {
            raw += hal_adc_read(ch);
            excitation += hal_adc_read(FB_EXCITATION_CHANNEL);
        }
        push_record(app, ch, now, raw, excitation);
    }
}
