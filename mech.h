/*
** mech.h: the whole public API of libmech: every module's header.
*/
#ifndef MECH_H
#define MECH_H
#include "core/core.h"
#include "compiler/compiler.h"
#include "data/data.h"
#include "interp/interp.h"
#include "tui/tui.h"
#endif
