/* hal.h and sdi12.h fakes for the host-gcc unit tests: a settable clock and ADC, a captured UART, a canned
 * SDI-12 reply. */
#include <string.h>

#include "hal.h"
#include "sdi12.h"
#include "hal_fake.h"

uint32_t fake_millis;
uint16_t fake_adc[8];
uint8_t fake_tx[4096];
uint16_t fake_tx_len;
uint8_t fake_sdi12_status;
char fake_sdi12_reply[128];

uint32_t hal_millis(void) { return fake_millis; }
void hal_set_millis(uint32_t value) { fake_millis = value; }
void hal_uart_putc(uint8_t byte)
{
    if (fake_tx_len < sizeof fake_tx)
        fake_tx[fake_tx_len++] = byte;
}
uint16_t hal_adc_read(uint8_t channel) { return fake_adc[channel & 7]; }
void hal_board_id(uint8_t out[8]) { memcpy(out, "SWFB0001", 8); }
void hal_fw_begin(uint32_t size) { (void)size; }
uint8_t hal_fw_store(uint32_t offset, const uint8_t *data, uint8_t len)
{
    (void)data;
    return offset + len <= 28672u;
}
void hal_sdi12_tx_enable(uint8_t on) { (void)on; }
void hal_sdi12_tx(uint8_t level) { (void)level; }
uint8_t hal_sdi12_rx(void) { return 0; }
uint16_t hal_ticks(void) { return 0; }

uint8_t sdi12_transact(const uint8_t *cmd, uint8_t len, uint8_t *reply, uint8_t max, uint8_t *reply_len,
                       uint16_t timeout_ms)
{
    (void)cmd;
    (void)len;
    (void)timeout_ms;
    size_t n = strlen(fake_sdi12_reply);
    if (n > max)
        n = max;
    memcpy(reply, fake_sdi12_reply, n);
    *reply_len = (uint8_t)n;
    return fake_sdi12_status;
}
