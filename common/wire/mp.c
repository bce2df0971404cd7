#include "mp.h"

const char *mp_type_name(mp_type_t type)
{
    switch (type) {
    case MP_NIL:
        return "nil";
    case MP_BOOL:
        return "bool";
    case MP_UINT:
    case MP_INT:
        return "int";
    case MP_FLOAT32:
    case MP_FLOAT64:
        return "float";
    case MP_STR:
        return "str";
    case MP_BIN:
        return "bin";
    case MP_ARRAY:
        return "array";
    case MP_MAP:
        return "map";
    case MP_EXT:
        return "ext";
    }
    return "unknown";
}

int mp_skip(const uint8_t *p, size_t avail, size_t *consumed)
{
    /* `pending` counts the items still to read. Every item takes at least
     * one byte, so more pending items than bytes left is a truncation we can
     * report at once, instead of looping over a header's 2^32 claimed
     * elements. uint64_t holds 2 * UINT32_MAX entries per map with room. */
    uint64_t pending = 1;
    size_t pos = 0;
    while (pending > 0) {
        mp_item_t item = {0};
        if (mp_read(p + pos, avail - pos, &item) != 0)
            return -1;
        pos += item.size;
        pending--;
        if (item.type == MP_ARRAY)
            pending += item.len;
        else if (item.type == MP_MAP)
            pending += 2 * (uint64_t)item.len;
        if (pending > avail - pos)
            return -1;
    }
    *consumed = pos;
    return 0;
}
