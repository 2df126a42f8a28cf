/* SPDX-License-Identifier: MIT */
/* The server test harness moved to the test-support library. */
#include "support/harness.h"
