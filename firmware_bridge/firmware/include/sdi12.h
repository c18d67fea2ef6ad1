/* SDI-12 master: one command/reply transaction (break, marking, 1200 baud 7E1, reply until CR LF). */
#ifndef FB_SDI12_H
#define FB_SDI12_H

#include <stdint.h>

enum { SDI12_OK = 0, SDI12_NO_REPLY = 1, SDI12_PARITY = 2, SDI12_OVERFLOW = 3 };

/* Sends cmd (len bytes), collects the reply into reply (capacity max) and its length into *reply_len. */
uint8_t sdi12_transact(const uint8_t *cmd, uint8_t len, uint8_t *reply, uint8_t max, uint8_t *reply_len,
                       uint16_t timeout_ms);

#endif
