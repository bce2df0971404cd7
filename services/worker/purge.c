#include "purge.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "pgconn.h"

int purge_run(PGconn *conn, int64_t retention_ms, int max_rounds, uint64_t *deleted, char *errstr,
              size_t errstr_size)
{
    char retention[32], limit[16];
    snprintf(retention, sizeof(retention), "%" PRId64, retention_ms);
    snprintf(limit, sizeof(limit), "%d", PURGE_BATCH_ROWS);
    const char *params[2] = {retention, limit};
    *deleted = 0;
    for (int round = 0; round < max_rounds; round++) {
        PGresult *res =
            PQexecParams(conn,
                         "DELETE FROM applied_commands WHERE ctid IN (SELECT ctid FROM applied_commands "
                         "WHERE applied_at < now() - make_interval(secs => $1::bigint / 1000.0) "
                         "LIMIT $2::int)",
                         2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            pgconn_error(conn, res, errstr, errstr_size);
            PQclear(res);
            return -1;
        }
        uint64_t n = strtoull(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        *deleted += n;
        if (n < PURGE_BATCH_ROWS)
            break;
    }
    return 0;
}
