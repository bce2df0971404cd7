#include "hex.h"

const char hex_lower[16] = "0123456789abcdef";
