/* The hardware abstraction layer: everything the protocol and application code needs from the board.
 * hal_avr.c implements it for the ATmega328P; test/hal_fake.c for the host-gcc unit tests. */
#ifndef FB_HAL_H
#define FB_HAL_H

#include <stdint.h>

#define FB_ANALOG_CHANNELS 4   /* ADC0..ADC3: dendrometer wipers / LVDT conditioner outputs */
#define FB_EXCITATION_CHANNEL 7 /* ADC7: the excitation voltage, sensed at the sensor connector */

uint32_t hal_millis(void);            /* board clock, ms since reset, wraps at 2^32 */
void hal_set_millis(uint32_t value);
void hal_uart_putc(uint8_t byte);     /* blocking transmit to the host */
uint16_t hal_adc_read(uint8_t channel); /* one 10-bit conversion against AVcc */
void hal_board_id(uint8_t out[8]);
void hal_fw_begin(uint32_t size);      /* prepare the staging area for a new image */
uint8_t hal_fw_store(uint32_t offset, const uint8_t *data, uint8_t len); /* 1 = stored */

/* SDI-12 line through a non-inverting half-duplex buffer: levels are wire levels (1 = spacing, +5 V). */
void hal_sdi12_tx_enable(uint8_t on);
void hal_sdi12_tx(uint8_t level);
uint8_t hal_sdi12_rx(void);
uint16_t hal_ticks(void);              /* free-running timer, 0.5 us per tick (wraps every 32.8 ms) */

#endif
