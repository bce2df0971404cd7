/*
 * lib_versions: one start-up line naming the shared libraries a binary runs
 * on, as the dynamic loader resolved them (not the headers it was built
 * with): librdkafka, libpq, libevent and msgpack-c. A broker or PostgreSQL
 * incident is first matched against library versions, and an image rebuilt on
 * a newer Debian point release changes them without a code change.
 *
 * msgpack-c is named twice: msgpack-c's packer, which writes every command and
 * every transcoded profile (wire/mp.h), is header code compiled into the binary,
 * so the version of the headers it was built with ("msgpack_c_headers") is the
 * one that wrote the bytes. The loaded library ("msgpack_c") is what the worker's
 * object trees run on (unpacker, zone); the api calls nothing else from it.
 */
#ifndef PROFILED_LIB_VERSIONS_H
#define PROFILED_LIB_VERSIONS_H

/* Logs {"message":"libraries","librdkafka":...,"libpq":...,"libevent":...,"msgpack_c":...,
 * "msgpack_c_headers":...}
 * at info level. Call once, after the log level is set. */
void lib_versions_log(void);

#endif
