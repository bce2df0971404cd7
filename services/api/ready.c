/*
 * ready: what /readyz and profiled_api_ready mean (README "Probes").
 *
 * The api is ready while it can answer: GETs need the loop's PostgreSQL
 * connection; PUTs need Kafka, and while Kafka is down they still get a
 * prompt 503 with Retry-After, which is the designed answer (DESIGN §2.5),
 * not a connection error from a pod taken out of the Service. So a loop is
 * unready only when it reaches neither, and the process when any loop is
 * (connections spread over the loops by SO_REUSEPORT), or after a producer's
 * fatal error (liveness fails too, the pod is about to restart).
 */
#include <stdio.h>

#include "ready.h"

bool api_ready(api_t *api, char *reason, size_t reason_size)
{
    for (unsigned i = 0; i < api->loop_count; i++) {
        api_loop_t *loop = &api->loops[i];
        if (atomic_load(&loop->kafka_fatal)) {
            snprintf(reason, reason_size, "the Kafka producer of thread %u hit a fatal error", i);
            return false;
        }
        if (!atomic_load(&loop->kafka_up) && !atomic_load(&loop->pg_up)) {
            snprintf(reason, reason_size, "thread %u reaches neither Kafka nor PostgreSQL", i);
            return false;
        }
    }
    snprintf(reason, reason_size, "ok");
    return true;
}

void api_ready_kafka_state(api_loop_t *loop, bool up)
{
    atomic_store(&loop->kafka_up, up);
    if (up) {
        atomic_store(&loop->kafka_seen, true);
        atomic_store(&loop->kafka_down, false);
        return;
    }
    /* A producer that never connected cannot tell an outage from a slow start-up: it
     * keeps queueing PUTs (answered at their deadline); one that was up knows. */
    if (atomic_load(&loop->kafka_seen))
        atomic_store(&loop->kafka_down, true);
}
