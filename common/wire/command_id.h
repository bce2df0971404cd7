/*
 * command_id: the one definition of a command id, 16 bytes (a UUID's worth),
 * carried as msgpack bin 8 in a command (proto/README.md) and as bytea in
 * apply_ids. The codec, the id derivations (http_ids) and the worker's fold
 * all use this type and size; their older names (CODEC_COMMAND_ID_BYTES,
 * HTTP_COMMAND_ID_BYTES, FOLD_ID_BYTES) are aliases of it.
 */
#ifndef PROFILED_COMMAND_ID_H
#define PROFILED_COMMAND_ID_H

#include <stdint.h>

#define COMMAND_ID_BYTES 16

typedef uint8_t command_id_t[COMMAND_ID_BYTES];

#endif
