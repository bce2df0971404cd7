/* profiled-worker entry point. Placeholder until its issue lands: answers --help. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: profiled-worker [--help]\n");
        return 0;
    }
    fprintf(stderr, "profiled-worker: not implemented yet\n");
    return 1;
}
