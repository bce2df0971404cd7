#include "log_limit.h"

static log_limit_bucket_t *log_limit_bucket(log_limit_t *limit, int key)
{
    for (int i = 0; i < LOG_LIMIT_KEYS; i++) {
        log_limit_bucket_t *bucket = &limit->buckets[i];
        if (!bucket->used) {
            bucket->used = true;
            bucket->key = key;
            bucket->tokens = limit->burst;
            bucket->at_us = -1;
            return bucket;
        }
        if (bucket->key == key)
            return bucket;
    }
    /* More reasons than buckets: the rest share the last one, which still bounds the total. */
    return &limit->buckets[LOG_LIMIT_KEYS - 1];
}

bool log_limit_take(log_limit_t *limit, int key, int64_t now_us, uint64_t *suppressed)
{
    log_limit_bucket_t *bucket = log_limit_bucket(limit, key);
    if (bucket->at_us >= 0 && now_us > bucket->at_us) {
        bucket->tokens += (double)(now_us - bucket->at_us) * limit->per_second / 1e6;
        if (bucket->tokens > limit->burst)
            bucket->tokens = limit->burst;
    }
    bucket->at_us = now_us;
    if (bucket->tokens < 1.0) {
        bucket->suppressed++;
        *suppressed = 0;
        return false;
    }
    bucket->tokens -= 1.0;
    *suppressed = bucket->suppressed;
    bucket->suppressed = 0;
    return true;
}
