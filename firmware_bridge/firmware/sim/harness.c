/* simavr harness for the firmware-bridge tests: runs the firmware ELF on an emulated ATmega328P at 16 MHz, paced
 * to wall-clock time, with USART0 on a pseudo-terminal, dendrometer voltages on the ADC inputs and an emulated
 * SDI-12 bus with sensors on PD6 (MCU TX) / PD7 (MCU RX).
 *
 * stdout: "PTY <path>" once the UART is attached, then "OK <command>" per handled command.
 * stdin, one command per line:
 *   adc <channel> <millivolts>       voltage at ADC<channel> (0..7; 7 is the excitation sense)
 *   sdi <address> <values>           what sensor <address> returns for D0, e.g. "sdi 0 +2009.87+22.3+112"
 *   sdi_wait <address> <seconds>     the ttt its M command announces (default 0)
 *   sdi_remove <address>             the sensor stops answering
 *   reset                            reset the MCU (RAM lost, EEPROM kept)
 *   quit
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "avr_adc.h"
#include "avr_ioport.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"
#include "uart_pty.h"

#define FREQ 16000000UL
#define BIT_CYCLES_X3 40000ULL /* 3 bit times at 1200 baud = 3 * 13333.3 cycles */
#define MAX_SENSORS 4

static avr_t *avr;
static double pace_start;
static double now_s(void);
static uart_pty_t pty;
static avr_irq_t *adc_irq[8];
static avr_irq_t *sdi_rx_irq;

struct sensor {
    char address;
    int wait_s;
    int active;
    char values[80];
};
static struct sensor sensors[MAX_SENSORS];

/* --- SDI-12 sensor side ------------------------------------------------------------------------------------ */
static int tx_level;               /* MCU TX pin (wire level, 1 = spacing) */
static avr_cycle_count_t rise_at;  /* when the line last went to spacing */
static int awake, decoding, bit_index;
static uint8_t current_char, ones;
static avr_cycle_count_t char_start;
static char command[40];
static int command_len;
static char reply[128];
static int reply_len;
static avr_cycle_count_t reply_start;
static int crc_requested[MAX_SENSORS];

static struct sensor *find_sensor(char address)
{
    for (int i = 0; i < MAX_SENSORS; i++)
        if (sensors[i].active && sensors[i].address == address)
            return &sensors[i];
    return NULL;
}

static struct sensor *slot_for(char address)
{
    for (int i = 0; i < MAX_SENSORS; i++)
        if (sensors[i].address == address)
            return &sensors[i];
    for (int i = 0; i < MAX_SENSORS; i++)
        if (!sensors[i].address) {
            sensors[i].address = address;
            return &sensors[i];
        }
    return NULL;
}

static uint16_t crc16_arc(const char *s, int n)
{
    uint16_t crc = 0;
    for (int i = 0; i < n; i++) {
        crc ^= (uint8_t)s[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

static int count_values(const char *v)
{
    int n = 0;
    for (; *v; v++)
        if (*v == '+' || *v == '-')
            n++;
    return n;
}

static avr_cycle_count_t reply_bit(avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)param;
    (void)when;
    avr_cycle_count_t elapsed = a->cycle - reply_start;
    int k = (int)((elapsed * 3) / BIT_CYCLES_X3); /* bit number since the reply began */
    int ch = k / 10, bit = k % 10;
    if (ch >= reply_len) {
        avr_raise_irq(sdi_rx_irq, 0);
        return 0;
    }
    uint8_t c = (uint8_t)reply[ch];
    int level;
    if (bit == 0)
        level = 1;
    else if (bit <= 7)
        level = ((c >> (bit - 1)) & 1) ? 0 : 1;
    else if (bit == 8)
        level = __builtin_parity(c & 0x7F) ? 0 : 1;
    else
        level = 0;
    avr_raise_irq(sdi_rx_irq, (uint32_t)level);
    return reply_start + ((avr_cycle_count_t)(k + 1) * BIT_CYCLES_X3 + 2) / 3;
}

static void answer(void)
{
    reply_len = 0;
    if (command_len < 2 || command[command_len - 1] != '!')
        return;
    char address = command[0];
    const char *body = command + 1;
    int body_len = command_len - 2;
    struct sensor *s = NULL;
    if (address == '?') {
        for (int i = 0; i < MAX_SENSORS && !s; i++)
            if (sensors[i].active)
                s = &sensors[i];
    } else {
        s = find_sensor(address);
    }
    if (!s)
        return;
    int idx = (int)(s - sensors);
    char out[120];
    if (body_len == 0) {
        snprintf(out, sizeof out, "%c", s->address);
    } else if (body_len == 1 && body[0] == 'I') {
        snprintf(out, sizeof out, "%c14SINKWATCSIMSDI100SN%04d", s->address, idx);
    } else if ((body_len == 1 && body[0] == 'M') || (body_len == 2 && body[0] == 'M' && body[1] == 'C')) {
        crc_requested[idx] = body_len == 2;
        snprintf(out, sizeof out, "%c%03d%d", s->address, s->wait_s, count_values(s->values));
    } else if (body_len == 2 && body[0] == 'D' && body[1] == '0') {
        int n = snprintf(out, sizeof out, "%c%s", s->address, s->values);
        if (crc_requested[idx]) {
            uint16_t crc = crc16_arc(out, n);
            snprintf(out + n, sizeof out - (size_t)n, "%c%c%c", 0x40 | (crc >> 12), 0x40 | ((crc >> 6) & 0x3F),
                     0x40 | (crc & 0x3F));
        }
    } else {
        return;
    }
    reply_len = snprintf(reply, sizeof reply, "%s\r\n", out);
    /* start the reply 9 ms after the command's stop bit (the spec allows 8.33..15 ms) */
    reply_start = avr->cycle + FREQ * 9 / 1000;
    avr_cycle_timer_register(avr, FREQ * 9 / 1000, reply_bit, NULL);
}

static avr_cycle_count_t sample_bit(avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)a;
    (void)when;
    (void)param;
    if (!decoding)
        return 0;
    int level = tx_level;
    if (bit_index < 7) {
        int bit = level ? 0 : 1;
        current_char |= (uint8_t)(bit << bit_index);
        ones ^= (uint8_t)bit;
    } else if (bit_index == 7) {
        ones ^= (uint8_t)(level ? 0 : 1);
    } else { /* stop bit */
        decoding = 0;
        if (level == 0 && ones == 0 && command_len < (int)sizeof command - 1) {
            command[command_len++] = (char)current_char;
            if (current_char == '!') {
                awake = 0;
                answer();
            }
        }
        return 0;
    }
    bit_index++;
    return char_start + ((avr_cycle_count_t)(3 + 2 * bit_index) * BIT_CYCLES_X3 / 2 + 2) / 3;
}

static void tx_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    int level = value ? 1 : 0;
    if (level == tx_level)
        return;
    avr_cycle_count_t now = avr->cycle;
    if (level) {
        rise_at = now;
        if (awake && !decoding) {
            decoding = 1;
            bit_index = 0;
            current_char = 0;
            ones = 0;
            char_start = now;
            /* first sample in the middle of data bit 0: 1.5 bit times after the start edge */
            avr_cycle_timer_register(avr, (avr_cycle_count_t)(BIT_CYCLES_X3 / 2), sample_bit, NULL);
        }
    } else if (now - rise_at >= FREQ * 11 / 1000) { /* spacing for >= 11 ms: a break */
        avr_cycle_timer_cancel(avr, sample_bit, NULL);
        decoding = 0;
        awake = 1;
        command_len = 0;
    }
    tx_level = level;
}

/* --- control ----------------------------------------------------------------------------------------------- */
static int handle_command(char *line)
{
    int ch, mv, seconds;
    char address;
    char values[80];
    line[strcspn(line, "\r\n")] = 0;
    if (sscanf(line, "adc %d %d", &ch, &mv) == 2 && ch >= 0 && ch < 8) {
        avr_raise_irq(adc_irq[ch], (uint32_t)mv);
    } else if (sscanf(line, "sdi_wait %c %d", &address, &seconds) == 2) {
        struct sensor *s = slot_for(address);
        if (s)
            s->wait_s = seconds;
    } else if (sscanf(line, "sdi_remove %c", &address) == 1) {
        struct sensor *s = slot_for(address);
        if (s)
            s->active = 0;
    } else if (sscanf(line, "sdi %c %79s", &address, values) == 2) {
        struct sensor *s = slot_for(address);
        if (s) {
            s->active = 1;
            snprintf(s->values, sizeof s->values, "%s", values);
        }
    } else if (strcmp(line, "reset") == 0) {
        avr_reset(avr);
        pace_start = now_s() - (double)avr->cycle / FREQ;
        for (int i = 0; i < 8; i++) /* keep the analog inputs where they were */
            avr_raise_irq(adc_irq[i], adc_irq[i]->value);
    } else if (strcmp(line, "quit") == 0) {
        return 0;
    } else {
        printf("ERR %s\n", line);
        fflush(stdout);
        return 1;
    }
    printf("OK %s\n", line);
    fflush(stdout);
    return 1;
}

static int poll_stdin(void)
{
    static char buf[256];
    static size_t len;
    struct pollfd p = {.fd = 0, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 1;
    ssize_t n = read(0, buf + len, sizeof buf - 1 - len);
    if (n <= 0)
        return 0; /* stdin closed: the test is gone */
    len += (size_t)n;
    buf[len] = 0;
    char *nl;
    while ((nl = strchr(buf, '\n'))) {
        *nl = 0;
        if (!handle_command(buf))
            return 0;
        size_t used = (size_t)(nl - buf) + 1;
        memmove(buf, nl + 1, len - used + 1);
        len -= used;
    }
    if (len >= sizeof buf - 1)
        len = 0;
    return 1;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s firmware.elf\n", argv[0]);
        return 2;
    }
    elf_firmware_t fw;
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(argv[1], &fw) != 0) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    avr = avr_make_mcu_by_name("atmega328p");
    if (!avr) {
        fprintf(stderr, "simavr does not know atmega328p\n");
        return 1;
    }
    avr_init(avr);
    avr->frequency = FREQ;
    avr->vcc = avr->avcc = avr->aref = 5000;
    avr_load_firmware(avr, &fw);
    avr->frequency = FREQ;
    avr->vcc = avr->avcc = avr->aref = 5000;
    avr->log = 0;

    for (int i = 0; i < 8; i++)
        adc_irq[i] = avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + i);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 6), tx_changed, NULL);
    sdi_rx_irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 7);
    avr_raise_irq(sdi_rx_irq, 0);

    uart_pty_init(avr, &pty);
    uart_pty_connect(&pty, '0');
    printf("PTY %s\n", pty.port[0].slavename);
    fflush(stdout);

    pace_start = now_s();
    unsigned long iterations = 0;
    for (;;) {
        int state = avr_run(avr);
        if (state == cpu_Done || state == cpu_Crashed) {
            fprintf(stderr, "firmware stopped (state %d)\n", state);
            break;
        }
        if (++iterations % 2000)
            continue;
        if (!poll_stdin())
            break;
        /* pace emulated time to wall-clock time, so the board clock runs at a realistic rate */
        double ahead = (double)avr->cycle / FREQ - (now_s() - pace_start);
        if (ahead > 0.002) {
            struct timespec t = {.tv_sec = 0, .tv_nsec = (long)(ahead * 1e9)};
            if (t.tv_nsec > 999999999L)
                t.tv_nsec = 999999999L;
            nanosleep(&t, NULL);
        }
    }
    uart_pty_stop(&pty);
    return 0;
}
