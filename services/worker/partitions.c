#include "partitions.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pgconn.h"
#include "xalloc.h"

parts_entry_t *parts_find(parts_t *parts, int32_t partition)
{
    for (size_t i = 0; i < parts->count; i++)
        if (parts->entries[i].partition == partition)
            return &parts->entries[i];
    return NULL;
}

/* The lane holding the fewest partitions, so that lanes share the work
 * evenly whatever the assignment. */
static int parts_emptiest_lane(const parts_t *parts)
{
    int best = 0;
    size_t best_count = SIZE_MAX;
    for (int lane = 0; lane < parts->lane_count; lane++) {
        size_t count = 0;
        for (size_t i = 0; i < parts->count; i++)
            count += parts->entries[i].lane == lane;
        if (count < best_count) {
            best = lane;
            best_count = count;
        }
    }
    return best;
}

parts_entry_t *parts_add(parts_t *parts, int32_t partition)
{
    parts_entry_t *p = parts_find(parts, partition);
    if (p)
        return p;
    if (parts->count == parts->cap) {
        size_t cap = parts->cap ? parts->cap * 2 : 16;
        parts_entry_t *grown = xrealloc(parts->entries, cap * sizeof(*grown), "the partition table");
        parts->entries = grown;
        parts->cap = cap;
    }
    int lane = parts_emptiest_lane(parts);
    p = &parts->entries[parts->count++];
    memset(p, 0, sizeof(*p));
    p->partition = partition;
    p->lane = lane;
    return p;
}

void parts_remove(parts_t *parts, int32_t partition)
{
    parts_entry_t *p = parts_find(parts, partition);
    if (p)
        *p = parts->entries[--parts->count];
}

rd_kafka_topic_partition_list_t *parts_list(const parts_t *parts, const char *topic, int lane)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)parts->count + 1);
    for (size_t i = 0; i < parts->count; i++)
        if (lane < 0 || parts->entries[i].lane == lane)
            rd_kafka_topic_partition_list_add(list, topic, parts->entries[i].partition);
    return list;
}

int parts_read_positions(parts_t *parts, PGconn *conn, const char *group, const char *topic,
                         rd_kafka_topic_partition_list_t *list, char *errstr, size_t errstr_size)
{
    buf_t array = {0};
    buf_append_byte(&array, '{');
    for (int i = 0; i < list->cnt; i++)
        buf_appendf(&array, "%s%" PRId32, i ? "," : "", list->elems[i].partition);
    buf_append_byte(&array, '}');
    buf_terminate(&array);
    const char *params[3] = {group, topic, (const char *)array.data};
    PGresult *res = PQexecParams(conn,
                                 "SELECT partition, next_offset FROM kafka_positions "
                                 "WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])",
                                 3, NULL, params, NULL, NULL, 0);
    buf_free(&array);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgconn_error(conn, res, errstr, errstr_size);
        PQclear(res);
        return -1;
    }
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        parts_entry_t *p = parts_add(parts, tp->partition);
        p->known = true;
        p->stored = false;
        p->next_offset = 0;
        tp->offset = 0;
        for (int r = 0; r < PQntuples(res); r++) {
            if (atoi(PQgetvalue(res, r, 0)) != tp->partition)
                continue;
            p->stored = true;
            p->next_offset = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            tp->offset = p->next_offset;
        }
        p->fetch_offset = p->next_offset;
    }
    PQclear(res);
    return 0;
}

void parts_free(parts_t *parts)
{
    free(parts->entries);
    memset(parts, 0, sizeof(*parts));
}
