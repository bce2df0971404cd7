/*
 * transcode_schema: the type check of the documented Courier profile fields,
 * run by json_transcode on the profile map it just wrote. It reads msgpack,
 * not JSON, because by then duplicate keys are resolved (last value wins),
 * so the check sees exactly the profile that will be stored.
 *
 * Rules: a documented field may be absent or null; otherwise it must have its
 * documented shape (see the table in transcode_schema.c). Unknown keys, at
 * any depth, are not checked.
 */
#ifndef PROFILED_TRANSCODE_SCHEMA_H
#define PROFILED_TRANSCODE_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

/*
 * `profile` is one canonical msgpack map written by the transcoder (trusted:
 * its well-formedness is asserted, not checked). Returns 0, or -1 with
 * errstr naming the field path and the rule: "profile.address.locality must
 * be a string".
 */
int transcode_schema_check(const uint8_t *profile, size_t len, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* For tests: true when the field tables are sorted by name and every
 * recorded name length is right. */
int transcode_schema_table_sorted(void);

#endif
