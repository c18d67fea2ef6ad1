/* SDI-12 master by bit timing on two GPIOs through a half-duplex buffer (SDI-12 Specification v1.4): break >= 12 ms,
 * marking >= 8.33 ms, then 1200 baud, 7 data bits, even parity, 1 stop bit, inverted logic (spacing = 1 = +5 V).
 * Blocking for one transaction; the host UART keeps receiving into its interrupt-driven buffer meanwhile. */
#include "sdi12.h"
#include "hal.h"

#define TICKS_PER_3_BITS 5000u  /* 3 bit times of 833.33 us at 0.5 us per tick */
#define BREAK_TICKS 25000u      /* 12.5 ms */
#define MARK_TICKS 18000u       /* 9 ms */
#define HALF_BIT 833u
#define CHAR_GAP_MS 20u         /* end of reply when no start bit follows within this */

static uint16_t bit_at(uint16_t start, uint8_t n)
{
    return (uint16_t)(start + (uint16_t)(((uint32_t)n * TICKS_PER_3_BITS) / 3u));
}

static void wait_until(uint16_t t)
{
    while ((int16_t)(hal_ticks() - t) < 0) {
    }
}

static uint8_t even_parity(uint8_t c)
{
    uint8_t p = 0;
    for (uint8_t i = 0; i < 7; i++)
        p ^= (uint8_t)((c >> i) & 1u);
    return p;
}

static void send_char(uint8_t c)
{
    uint16_t start = hal_ticks();
    uint8_t p = even_parity(c);
    hal_sdi12_tx(1); /* start bit: spacing */
    for (uint8_t i = 0; i < 7; i++) {
        wait_until(bit_at(start, (uint8_t)(1 + i)));
        hal_sdi12_tx(((c >> i) & 1u) ? 0 : 1);
    }
    wait_until(bit_at(start, 8));
    hal_sdi12_tx(p ? 0 : 1);
    wait_until(bit_at(start, 9));
    hal_sdi12_tx(0); /* stop bit: marking */
    wait_until(bit_at(start, 10));
}

uint8_t sdi12_transact(const uint8_t *cmd, uint8_t len, uint8_t *reply, uint8_t max, uint8_t *reply_len,
                       uint16_t timeout_ms)
{
    *reply_len = 0;
    hal_sdi12_tx_enable(1);
    uint16_t t = hal_ticks();
    hal_sdi12_tx(1);
    wait_until((uint16_t)(t + BREAK_TICKS));
    t = hal_ticks();
    hal_sdi12_tx(0);
    wait_until((uint16_t)(t + MARK_TICKS));
    for (uint8_t i = 0; i < len; i++)
        send_char(cmd[i]);
    hal_sdi12_tx_enable(0);

    uint8_t status = SDI12_OK;
    uint32_t deadline = hal_millis() + timeout_ms;
    for (;;) {
        while (!hal_sdi12_rx()) { /* wait for a start bit */
            if ((int32_t)(hal_millis() - deadline) >= 0)
                return *reply_len ? (status == SDI12_OK ? SDI12_NO_REPLY : status) : SDI12_NO_REPLY;
        }
        uint16_t start = hal_ticks();
        uint8_t c = 0, ones = 0;
        for (uint8_t i = 0; i < 8; i++) {
            wait_until((uint16_t)(bit_at(start, (uint8_t)(1 + i)) + HALF_BIT));
            uint8_t bit = hal_sdi12_rx() ? 0 : 1;
            ones ^= bit;
            if (i < 7)
                c |= (uint8_t)(bit << i);
        }
        wait_until((uint16_t)(bit_at(start, 9) + HALF_BIT)); /* into the stop bit */
        if (ones)
            status = SDI12_PARITY;
        if (*reply_len < max)
            reply[(*reply_len)++] = c;
        else
            status = SDI12_OVERFLOW;
        if (c == '\n')
            return status;
        deadline = hal_millis() + CHAR_GAP_MS;
    }
}
