#include "core/core.h"
#include <stdio.h>
int main(int argc, char **argv) { (void)argc; (void)argv; printf("mech\n"); return 0; }
