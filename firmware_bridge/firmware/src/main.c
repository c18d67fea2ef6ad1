/* ATmega328P entry point: announce the boot, then feed host bytes to the application and run the sampler. */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/wdt.h>

#include "app.h"
#include "hal.h"

void hal_init(void);
int hal_uart_getc(void);
uint16_t hal_boot_count(void);

static fb_app_t app;

int main(void)
{
    uint8_t cause = MCUSR;
    MCUSR = 0;
    wdt_disable();
    hal_init();
    fb_app_init(&app, hal_boot_count(), cause);
    sei();
    fb_app_hello(&app);
    for (;;) {
        int byte;
        while ((byte = hal_uart_getc()) >= 0)
            fb_app_rx_byte(&app, (uint8_t)byte);
        fb_app_poll(&app);
    }
}
