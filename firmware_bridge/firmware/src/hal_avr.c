/* hal.h for the ATmega328P at 16 MHz: USART0 38400 bit/s to the host (RX interrupt-driven), Timer0 1 kHz board
 * clock, Timer1 free-running at 2 MHz for SDI-12 bit timing, ADC against AVcc, EEPROM board id.
 * SDI-12 buffer: PD6 = TX data, PD5 = TX enable (high drives the bus), PD7 = RX data. */
#include <avr/eeprom.h>
#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

#include "app.h"
#include "hal.h"

#define RX_RING 128
static volatile uint8_t rx_ring[RX_RING];
static volatile uint8_t rx_head, rx_tail;
static volatile uint32_t millis;

ISR(USART_RX_vect)
{
    uint8_t byte = UDR0;
    uint8_t next = (uint8_t)((rx_head + 1) & (RX_RING - 1));
    if (next != rx_tail) { /* when full the byte is lost; the frame's CRC check then fails and is counted */
        rx_ring[rx_head] = byte;
        rx_head = next;
    }
}

ISR(TIMER0_COMPA_vect)
{
    millis++;
}

void hal_init(void)
{
    UCSR0A = _BV(U2X0);
    UBRR0 = 51; /* 16 MHz / (8 * 38400) - 1 */
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
    TCCR0A = _BV(WGM01);
    TCCR0B = _BV(CS01) | _BV(CS00);
    OCR0A = 249;
    TIMSK0 = _BV(OCIE0A);
    TCCR1A = 0;
    TCCR1B = _BV(CS11);
    ADMUX = _BV(REFS0);
    ADCSRA = _BV(ADEN) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0);
    DDRD |= _BV(PD6) | _BV(PD5);
    PORTD &= (uint8_t)~(_BV(PD6) | _BV(PD5));
    DDRD &= (uint8_t)~_BV(PD7);
}

int hal_uart_getc(void)
{
    if (rx_head == rx_tail)
        return -1;
    uint8_t byte = rx_ring[rx_tail];
    rx_tail = (uint8_t)((rx_tail + 1) & (RX_RING - 1));
    return byte;
}

void hal_uart_putc(uint8_t byte)
{
    while (!(UCSR0A & _BV(UDRE0))) {
    }
    UDR0 = byte;
}

uint32_t hal_millis(void)
{
    uint32_t value;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { value = millis; }
    return value;
}

void hal_set_millis(uint32_t value)
{
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { millis = value; }
}

uint16_t hal_adc_read(uint8_t channel)
{
    ADMUX = (uint8_t)(_BV(REFS0) | (channel & 0x0F));
    ADCSRA |= _BV(ADSC);
    while (ADCSRA & _BV(ADSC)) {
    }
    return ADC;
}

void hal_board_id(uint8_t out[8])
{
    static const char fallback[8] = {'S', 'W', 'F', 'B', '0', '0', '0', '1'};
    eeprom_read_block(out, (const void *)0, 8);
    if (out[0] == 0xFF || out[0] == 0)
        for (uint8_t i = 0; i < 8; i++)
            out[i] = (uint8_t)fallback[i];
}

uint16_t hal_boot_count(void)
{
    uint16_t count = eeprom_read_word((uint16_t *)8);
    count = (uint16_t)(count + 1);
    if (count == 0xFFFF || count == 0)
        count = 1;
    eeprom_update_word((uint16_t *)8, count);
    return count;
}

/* The reference board verifies an image (size, order, CRC) but does not program it: writing the application
 * section needs a bootloader in the boot section (SPM), which this firmware does not include. */
void hal_fw_begin(uint32_t size)
{
    (void)size;
}

uint8_t hal_fw_store(uint32_t offset, const uint8_t *data, uint8_t len)
{
    (void)data;
    return offset + len <= FB_FW_MAX_IMAGE;
}

void hal_sdi12_tx_enable(uint8_t on)
{
    if (on)
        PORTD |= _BV(PD5);
    else
        PORTD &= (uint8_t)~_BV(PD5);
}

void hal_sdi12_tx(uint8_t level)
{
    if (level)
        PORTD |= _BV(PD6);
    else
        PORTD &= (uint8_t)~_BV(PD6);
}

uint8_t hal_sdi12_rx(void)
{
    return (PIND & _BV(PD7)) ? 1 : 0;
}

uint16_t hal_ticks(void)
{
    uint16_t value;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { value = TCNT1; }
    return value;
}
