#include "utf8.h"

size_t utf8_sequence_len(const uint8_t *bytes, size_t avail)
{
    if (avail == 0)
        return 0;
    uint8_t lead = bytes[0];
    if (lead < 0x80)
        return 1;
    /* Second-byte bounds exclude overlong forms, surrogates and > U+10FFFF. */
    uint8_t low = 0x80, high = 0xBF;
    size_t len;
    if (lead >= 0xC2 && lead <= 0xDF) {
        len = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        len = 3;
        if (lead == 0xE0)
            low = 0xA0;
        else if (lead == 0xED)
            high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        len = 4;
        if (lead == 0xF0)
            low = 0x90;
        else if (lead == 0xF4)
            high = 0x8F;
    } else {
        return 0;
    }
    if (avail < len)
        return 0;
    if (bytes[1] < low || bytes[1] > high)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((bytes[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

bool utf8_valid(const uint8_t *bytes, size_t len, bool *has_nul)
{
    bool nul = false;
    size_t i = 0;
    while (i < len) {
        /* Fast path: eight ASCII bytes at a time. */
        while (i + 8 <= len) {
            uint64_t word;
            __builtin_memcpy(&word, bytes + i, 8);
            if (word & 0x8080808080808080ULL)
                break;
            /* A zero byte inside the word: the classic haszero trick. */
            if ((word - 0x0101010101010101ULL) & ~word & 0x8080808080808080ULL)
                nul = true;
            i += 8;
        }
        if (i >= len)
            break;
        if (bytes[i] < 0x80) {
            if (bytes[i] == 0)
                nul = true;
            i++;
            continue;
        }
        size_t seq = utf8_sequence_len(bytes + i, len - i);
        if (seq == 0)
            return false;
        i += seq;
    }
    if (has_nul)
        *has_nul = nul;
    return true;
}
