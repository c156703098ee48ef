#include "cli.h"

int cmd_dev(int argc, char **argv)
{
    (void)argc;
    cli_error(argv[0], "not built yet");
    return CLI_ERROR;
}
