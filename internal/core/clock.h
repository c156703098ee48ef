#ifndef AQ_CORE_CLOCK_H
#define AQ_CORE_CLOCK_H

#include <stdint.h>

/* Wall-clock Unix milliseconds (timestamps that cross processes). */
int64_t aq_now_unix_ms(void);
/* Monotonic milliseconds and microseconds (durations inside one process). */
int64_t aq_mono_ms(void);
int64_t aq_mono_us(void);

#endif
