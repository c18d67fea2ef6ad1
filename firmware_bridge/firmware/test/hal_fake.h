#ifndef FB_HAL_FAKE_H
#define FB_HAL_FAKE_H
#include <stdint.h>
extern uint32_t fake_millis;
extern uint16_t fake_adc[8];
extern uint8_t fake_tx[4096];
extern uint16_t fake_tx_len;
extern uint8_t fake_sdi12_status;
extern char fake_sdi12_reply[128];
#endif
