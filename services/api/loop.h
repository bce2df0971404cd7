/*
 * loop: one event-loop thread of profiled-api (loop.c): created and
 * listening on the main thread, run on its own, stopped through its
 * stop_event (SIGTERM), destroyed on the main thread after it returned.
 */
#ifndef PROFILED_API_LOOP_H
#define PROFILED_API_LOOP_H

#include <stddef.h>

#include "api.h"

int api_loop_init(api_loop_t *loop, api_t *api, unsigned index, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* The thread's body: dispatches until the loop drained (or the shutdown deadline passed). */
void *api_loop_run(void *arg);
void api_loop_destroy(api_loop_t *loop);

#endif
