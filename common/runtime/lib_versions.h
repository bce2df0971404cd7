/*
 * lib_versions: one start-up line naming the shared libraries a binary runs
 * on, as the dynamic loader resolved them (not the headers it was built
 * with): librdkafka, libpq, libevent and msgpack-c. A broker or PostgreSQL
 * incident is first matched against library versions, and an image rebuilt on
 * a newer Debian point release changes them without a code change.
 */
#ifndef PROFILED_LIB_VERSIONS_H
#define PROFILED_LIB_VERSIONS_H

/* Logs {"message":"libraries","librdkafka":...,"libpq":...,"libevent":...,"msgpack_c":...}
 * at info level. Call once, after the log level is set. */
void lib_versions_log(void);

#endif
